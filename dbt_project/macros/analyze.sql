{#
    Post-hook of every model (dbt_project.yml): planner statistics for what a run (re)built, on
    PostgreSQL only (DuckDB keeps its own statistics as it writes; the macro renders nothing
    there, and nothing for views and ephemeral models). A table is analyzed when it has no
    statistics yet — a table model rebuilt by this run, an incremental one built in full (first
    build, --full-refresh) — or when it grew by more than a tenth of its size at the last ANALYZE
    (a large incremental batch; autovacuum's own analyze threshold, for servers where autovacuum
    is off or has not caught up). ANALYZE samples a fixed number of rows (30k at
    default_statistics_target 100), so it costs about the same on any size of table; the check
    itself is a catalogue lookup. It runs in the model's transaction and sees the rows just written.
#}
{% macro ops_analyze_if_postgres() -%}
    {%- if target.type == 'postgres' and config.get('materialized') in ('table', 'incremental') -%}
    do $ops_analyze$
    begin
        if exists (
            select 1
            from pg_class as c
            where c.oid = to_regclass('{{ this }}')
              and (
                  not exists (
                      select 1 from pg_stats as s
                      where s.schemaname = '{{ this.schema }}' and s.tablename = '{{ this.identifier }}'
                  )
                  or pg_relation_size(c.oid)
                     > 1.1 * greatest(c.relpages, 1)::bigint * current_setting('block_size')::bigint
              )
        ) then
            execute 'analyze {{ this }}';
        end if;
    end
    $ops_analyze$
    {%- endif -%}
{%- endmacro %}
