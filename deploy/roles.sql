-- Least-privilege roles for ops-warehouse: the same as `ops-warehouse admin roles`, for psql 15+.
-- Idempotent: run it again after a schema or a table appears (e.g. raw._extract_state after the
-- first extract) or to change a password.
--
--   OPS_ROLE_PASSWORD_LOADER=... OPS_ROLE_PASSWORD_ANALYST=... \
--   psql -h HOST -U postgres -v source_db=bot -v warehouse_db=ops_warehouse -f deploy/roles.sql
--
-- Variables (-v name=value; defaults in brackets):
--   source_db, warehouse_db   the databases (required; may be on one cluster or two: with two
--                             clusters run the script once per cluster with skip_source=1 /
--                             skip_warehouse=1)
--   source_schema             schema of the bot's tables [public]
--   source_relations          comma-separated source tables and views the reader may SELECT
--                             [the defaults of orchestration/lib/extract/raw_schema.py TABLES and
--                             the view content_metadata; list yours if OPS_SOURCE_TABLE_* renames them]
--   reader_role, loader_role, analyst_role, evaluator_role
--                             [ops_source_reader, ops_loader, ops_analyst, ops_alert_evaluator]
--   login_without_password    1: a role without a password is LOGIN (trust/peer/cert in
--                             pg_hba.conf); 0: NOLOGIN [1]
-- Passwords: environment variables OPS_ROLE_PASSWORD_SOURCE_READER, _LOADER, _ANALYST,
-- _ALERT_EVALUATOR (never echoed). psql sends them in ALTER ROLE ... PASSWORD, which the server
-- hashes (password_encryption) but a statement log would show: keep log_statement below 'ddl'
-- while running it, or use `ops-warehouse admin roles`, which sends only SCRAM verifiers.
\set ON_ERROR_STOP on
\set QUIET on
\if :{?source_db}
\else
  \echo 'give -v source_db=<source database> (and -v warehouse_db=...)'
  \quit
\endif
\if :{?warehouse_db}
\else
  \echo 'give -v warehouse_db=<warehouse database>'
  \quit
\endif
\if :{?source_schema} \else \set source_schema public \endif
\if :{?source_relations} \else \set source_relations 'system_events,job_heartbeats,content_generation_metadata_comprehensive,posting_attempts,metrics_scraper_runs,content_metadata' \endif
\if :{?reader_role} \else \set reader_role ops_source_reader \endif
\if :{?loader_role} \else \set loader_role ops_loader \endif
\if :{?analyst_role} \else \set analyst_role ops_analyst \endif
\if :{?evaluator_role} \else \set evaluator_role ops_alert_evaluator \endif
\if :{?login_without_password} \else \set login_without_password 1 \endif
\if :{?skip_source} \else \set skip_source 0 \endif
\if :{?skip_warehouse} \else \set skip_warehouse 0 \endif
\set reader_pw ''
\set loader_pw ''
\set analyst_pw ''
\set evaluator_pw ''
\getenv reader_pw OPS_ROLE_PASSWORD_SOURCE_READER
\getenv loader_pw OPS_ROLE_PASSWORD_LOADER
\getenv analyst_pw OPS_ROLE_PASSWORD_ANALYST
\getenv evaluator_pw OPS_ROLE_PASSWORD_ALERT_EVALUATOR

-- ---------------------------------------------------------------------------------------------
-- the source: ops_source_reader reads the configured relations, nothing else
\if :skip_source
\else
\connect :source_db
\set QUIET on
select format('create role %I', :'reader_role')
 where not exists (select from pg_roles where rolname = :'reader_role') \gexec
select format('alter role %I %s nosuperuser nocreatedb nocreaterole noreplication nobypassrls', :'reader_role',
              case when :'reader_pw' <> '' or :'login_without_password' = '1' then 'login' else 'nologin' end) \gexec
select format('alter role %I password %L', :'reader_role', :'reader_pw') where :'reader_pw' <> '' \gexec
select format('grant connect on database %I to %I', current_database(), :'reader_role') \gexec
select format('grant usage on schema %I to %I', :'source_schema', :'reader_role') \gexec
select format('revoke all on all tables in schema %I from %I', :'source_schema', :'reader_role') \gexec
select format('grant select on %I.%I to %I', :'source_schema', r, :'reader_role')
  from unnest(string_to_array(:'source_relations', ',')) r
 where to_regclass(format('%I.%I', :'source_schema', r)) is not null \gexec
select format('%s: SELECT on %s', :'reader_role', coalesce(string_agg(table_schema || '.' || table_name, ', ' order by table_name), '(nothing: none of source_relations exists)'))
  from information_schema.role_table_grants
 where grantee = :'reader_role' and privilege_type = 'SELECT' \gset granted_
\echo :granted_format
\endif

-- ---------------------------------------------------------------------------------------------
-- the warehouse: ops_loader owns it, ops_analyst reads marts, ops_alert_evaluator reads marts
-- (and intermediate, raw._extract_state for the built-in rules) and writes alerts
\if :skip_warehouse
\else
\connect :warehouse_db
\set QUIET on
select format('create role %I', r)
  from unnest(array[:'loader_role', :'analyst_role', :'evaluator_role']) r
 where not exists (select from pg_roles where rolname = r) \gexec
select format('alter role %I %s nosuperuser nocreatedb nocreaterole noreplication nobypassrls', r,
              case when pw <> '' or :'login_without_password' = '1' then 'login' else 'nologin' end)
  from (values (:'loader_role', :'loader_pw'), (:'analyst_role', :'analyst_pw'),
               (:'evaluator_role', :'evaluator_pw')) v(r, pw) \gexec
select format('alter role %I password %L', r, pw)
  from (values (:'loader_role', :'loader_pw'), (:'analyst_role', :'analyst_pw'),
               (:'evaluator_role', :'evaluator_pw')) v(r, pw)
 where pw <> '' \gexec

select format('grant connect, create, temporary on database %I to %I', current_database(), :'loader_role') \gexec
select format('grant connect on database %I to %I', current_database(), r),
       format('revoke create on database %I from %I', current_database(), r)
  from unnest(array[:'analyst_role', :'evaluator_role']) r \gexec

-- the loader owns every warehouse schema and every relation in them
select format('create schema if not exists %I authorization %I', s, :'loader_role'),
       format('alter schema %I owner to %I', s, :'loader_role')
  from unnest(array['raw', 'staging', 'intermediate', 'marts', 'seeds', 'analytics', 'alerts']) s \gexec
select format('alter table %I.%I owner to %I', n.nspname, c.relname, :'loader_role')
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname in ('raw', 'staging', 'intermediate', 'marts', 'seeds', 'analytics', 'alerts')
   and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
   and c.relowner <> (select oid from pg_roles where rolname = :'loader_role')
   and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                   and d.deptype in ('a', 'i')) \gexec

-- the analyst and the evaluator start from nothing in the warehouse schemas
select format('revoke all on all tables in schema %I from %I', s, r),
       format('revoke all on schema %I from %I', s, r),
       format('alter default privileges for role %I in schema %I revoke all on tables from %I', :'loader_role', s, r)
  from unnest(array['raw', 'staging', 'intermediate', 'marts', 'seeds', 'analytics', 'alerts']) s,
       unnest(array[:'analyst_role', :'evaluator_role']) r \gexec

-- reading: the analyst marts; the evaluator marts and intermediate (and later tables there)
select format('grant usage on schema %I to %I', s, r),
       format('grant select on all tables in schema %I to %I', s, r),
       format('alter default privileges for role %I in schema %I grant select on tables to %I', :'loader_role', s, r)
  from (values ('marts', :'analyst_role'), ('marts', :'evaluator_role'),
               ('intermediate', :'evaluator_role')) v(s, r) \gexec
select format('grant usage on schema raw to %I', :'evaluator_role') \gexec
select format('grant select on raw._extract_state to %I', :'evaluator_role')
 where to_regclass('raw._extract_state') is not null \gexec

-- writing: the evaluator in alerts only; what it creates there the loader may use
select format('grant usage, create on schema alerts to %I', :'evaluator_role'),
       format('grant select, insert, update, delete on all tables in schema alerts to %I', :'evaluator_role'),
       format('grant usage, select, update on all sequences in schema alerts to %I', :'evaluator_role'),
       format('alter default privileges for role %I in schema alerts grant select, insert, update, delete on tables to %I',
              :'loader_role', :'evaluator_role'),
       format('alter default privileges for role %I in schema alerts grant usage, select, update on sequences to %I',
              :'loader_role', :'evaluator_role'),
       format('alter default privileges for role %I in schema alerts grant all on tables to %I',
              :'evaluator_role', :'loader_role') \gexec

\echo :loader_role': owner of schemas raw, staging, intermediate, marts, seeds, analytics, alerts; CREATE, TEMPORARY on database' :warehouse_db
\echo :analyst_role': SELECT on marts (and future marts tables)'
\echo :evaluator_role': SELECT on marts, intermediate, raw._extract_state; SELECT/INSERT/UPDATE/DELETE (and CREATE) in alerts'
\endif
