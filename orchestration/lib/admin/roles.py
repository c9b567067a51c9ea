"""Least-privilege PostgreSQL roles for the source and the warehouse, created idempotently.

=====================  ========================================================================
role                   can
=====================  ========================================================================
ops_source_reader      source database: CONNECT, USAGE on the source schema, SELECT on the
                       configured source relations only (``raw_schema.TABLES`` through
                       ``OPS_SOURCE_TABLE_<setting>`` / ``OPS_SOURCE_SCHEMA``, and the views of
                       ``source.schema.SOURCE_VIEWS`` such as ``content_metadata`` when they exist)
ops_loader             warehouse database: CONNECT, CREATE (schemas), TEMPORARY; owner of the
                       schemas ``raw``, ``staging``, ``intermediate``, ``marts``, ``seeds``,
                       ``analytics`` (dbt's target schema) and ``alerts`` and of every relation
                       in them: the extraction, dbt and the template miner run as it
ops_analyst            warehouse: CONNECT, SELECT on ``marts`` only (default privileges: marts
                       tables the loader creates later are readable too); nothing in raw, alerts
ops_alert_evaluator    warehouse: CONNECT, SELECT on ``marts`` and ``intermediate`` (the built-in
                       rules read ``intermediate.int_job_runs``) and on ``raw._extract_state``
                       alone (``stale_source``); SELECT/INSERT/UPDATE/DELETE on ``alerts`` tables
                       and its sequences, CREATE in ``alerts`` only (the alert tables are created
                       by the setup, owned by the loader; the evaluator owns none)
=====================  ========================================================================

Passwords come from ``OPS_ROLE_PASSWORD_<ROLE>`` (``OPS_ROLE_PASSWORD_SOURCE_READER``,
``…_LOADER``, ``…_ANALYST``, ``…_ALERT_EVALUATOR``); they are sent as SCRAM-SHA-256 verifiers
computed here (the clear text never reaches the server or its logs) and never printed. A role
without a password variable keeps the password it has (none when new): it can log in only where
``pg_hba.conf`` trusts it (trust, peer, cert); with ``login_without_password=False`` such a role is
NOLOGIN. Role names are ``<prefix><role>`` (prefix ``ops_``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql

from orchestration.lib import settings
from orchestration.lib.db import postgres_connect
from orchestration.lib.extract.raw_schema import RAW_SCHEMA, TABLES
from orchestration.lib.settings import Location

ROLES = ("source_reader", "loader", "analyst", "alert_evaluator")
PASSWORD_ENV = "OPS_ROLE_PASSWORD_{}"  # .format(role.upper())
# every schema the warehouse has: extraction (raw), dbt (models: staging, intermediate, marts;
# seeds; the target schema analytics — dbt_project.yml, profiles.yml, generate_schema_name), the
# template miner and anomaly scorer (marts), the alert ledger and outbox (alerts)
WAREHOUSE_SCHEMAS = (RAW_SCHEMA, "staging", "intermediate", "marts", "seeds", "analytics", "alerts")
ANALYST_SCHEMAS = ("marts",)
EVALUATOR_READ_SCHEMAS = ("marts", "intermediate")
EVALUATOR_RAW_TABLES = ("_extract_state",)
ALERTS_SCHEMA = "alerts"
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class RoleNames:
    source_reader: str = "ops_source_reader"
    loader: str = "ops_loader"
    analyst: str = "ops_analyst"
    alert_evaluator: str = "ops_alert_evaluator"

    @classmethod
    def with_prefix(cls, prefix: str = "ops_") -> "RoleNames":
        return cls(**{role: f"{prefix}{role}" for role in ROLES})

    def name(self, role: str) -> str:
        return getattr(self, role)


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802 / 7677): what
    ``CREATE ROLE … PASSWORD`` is given, so that the clear text never leaves this process."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def passwords_from_env() -> dict[str, str]:
    """``{role: password}`` for the roles whose ``OPS_ROLE_PASSWORD_<ROLE>`` is set and not empty."""
    return {role: value for role in ROLES if (value := os.environ.get(PASSWORD_ENV.format(role.upper())))}


def source_relations(conn: psycopg.Connection) -> tuple[str, list[str], list[str]]:
    """The source schema, the configured source relations that exist in it and those missing."""
    from orchestration.lib.source.schema import SOURCE_VIEWS

    schema = settings.source_schema() or conn.execute("select current_schema()").fetchone()[0]
    wanted = [settings.source_table_name(spec.setting, spec.name) for spec in TABLES.values()]
    present, missing = [], []
    for name in dict.fromkeys([*wanted, *SOURCE_VIEWS]):
        exists = conn.execute("select to_regclass(%s) is not null",
                              [sql.Identifier(schema, name).as_string(conn)]).fetchone()[0]
        if exists:
            present.append(name)
        elif name in wanted:
            missing.append(name)
    return schema, present, missing


class _Session:
    """One admin connection, one transaction; every statement and what it granted is recorded."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.conn = postgres_connect(location)
        self.report: list[str] = []

    def run(self, statement: sql.Composable | str, params: list | None = None, note: str | None = None) -> list:
        cur = self.conn.execute(statement, params)
        if note:
            self.report.append(note)
        return cur.fetchall() if cur.description else []

    def ensure_role(self, role: str, name: str, password: str | None, login_without_password: bool) -> None:
        exists = bool(self.run("select 1 from pg_roles where rolname = %s", [name]))
        login = password is not None or login_without_password
        options = sql.SQL("{} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS").format(
            sql.SQL("LOGIN" if login else "NOLOGIN"))
        if password is not None:
            options = sql.SQL("{} PASSWORD {}").format(options, sql.Literal(scram_verifier(password)))
        verb = "ALTER" if exists else "CREATE"
        self.run(sql.SQL(verb + " ROLE {} {}").format(sql.Identifier(name), options))
        how = "password ***" if password is not None else (
            "no password set here (trust/peer/cert in pg_hba.conf, or an existing password)" if login else "NOLOGIN")
        self.report.append(f"role {name} ({role}): {'updated' if exists else 'created'}, "
                           f"{'LOGIN' if login else 'NOLOGIN'}, {how}")

    def close(self, commit: bool) -> None:
        try:
            if commit:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()


def _i(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def setup_source(source: Location, names: RoleNames, passwords: dict[str, str] | None = None,
                 login_without_password: bool = True) -> list[str]:
    """``names.source_reader`` on the source database: CONNECT, USAGE on the source schema and
    SELECT on the configured source relations only (earlier grants on other relations of the
    schema are revoked). One transaction; the lines of what was granted."""
    passwords = passwords_from_env() if passwords is None else passwords
    s = _Session(source)
    ok = False
    try:
        reader = names.source_reader
        s.ensure_role("source_reader", reader, passwords.get("source_reader"), login_without_password)
        db = s.run("select current_database()")[0][0]
        schema, present, missing = source_relations(s.conn)
        s.run(sql.SQL("grant connect on database {} to {}").format(_i(db), _i(reader)),
              note=f"{reader}: CONNECT on database {db}")
        s.run(sql.SQL("grant usage on schema {} to {}").format(_i(schema), _i(reader)),
              note=f"{reader}: USAGE on schema {schema}")
        s.run(sql.SQL("revoke all on all tables in schema {} from {}").format(_i(schema), _i(reader)))
        for name in present:
            s.run(sql.SQL("grant select on {} to {}").format(_i(schema, name), _i(reader)),
                  note=f"{reader}: SELECT on {schema}.{name}")
        for name in missing:
            s.report.append(f"{reader}: {schema}.{name} does not exist (not granted; run again once it does)")
        ok = True
    finally:
        s.close(ok)
    return s.report


def setup_warehouse(warehouse: Location, names: RoleNames, passwords: dict[str, str] | None = None,
                    login_without_password: bool = True) -> list[str]:
    """The loader, the analyst and the alert evaluator on the warehouse database (see the module
    docstring). The warehouse schemas are created (owned by the loader) when missing, and existing
    schemas and relations in them are handed to the loader. One transaction."""
    from orchestration.lib.alerts import ledger, outbox

    passwords = passwords_from_env() if passwords is None else passwords
    # the alert tables exist before the evaluator first runs, owned by the loader (below): the
    # evaluator writes rows in them but owns none
    ledger.ensure_schema(warehouse)
    outbox.ensure_outbox(warehouse)
    s = _Session(warehouse)
    ok = False
    try:
        loader, analyst, evaluator = names.loader, names.analyst, names.alert_evaluator
        for role in ("loader", "analyst", "alert_evaluator"):
            s.ensure_role(role, names.name(role), passwords.get(role), login_without_password)
        db = s.run("select current_database()")[0][0]
        s.run(sql.SQL("grant connect, create, temporary on database {} to {}").format(_i(db), _i(loader)),
              note=f"{loader}: CONNECT, CREATE (schemas), TEMPORARY on database {db}")
        for role in (analyst, evaluator):
            s.run(sql.SQL("grant connect on database {} to {}").format(_i(db), _i(role)),
                  note=f"{role}: CONNECT on database {db}")
            s.run(sql.SQL("revoke create on database {} from {}").format(_i(db), _i(role)))
        # the loader owns the warehouse: its schemas and every relation in them
        for schema in WAREHOUSE_SCHEMAS:
            s.run(sql.SQL("create schema if not exists {} authorization {}").format(_i(schema), _i(loader)))
            s.run(sql.SQL("alter schema {} owner to {}").format(_i(schema), _i(loader)))
            moved = 0
            for (name,) in s.run(
                    """select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                       where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
                         and c.relowner <> (select oid from pg_roles where rolname = %s)
                         and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                                         and d.objid = c.oid and d.deptype in ('a', 'i'))
                       order by 1""", [schema, loader]):
                s.run(sql.SQL("alter table {} owner to {}").format(_i(schema, name), _i(loader)))
                moved += 1
            s.report.append(f"{loader}: owner of schema {schema}"
                            + (f" and of its {moved} relation(s) owned by others" if moved else ""))
        # start clean: the analyst and the evaluator have nothing in the warehouse schemas but
        # what is granted below
        for role in (analyst, evaluator):
            for schema in WAREHOUSE_SCHEMAS:
                s.run(sql.SQL("revoke all on all tables in schema {} from {}").format(_i(schema), _i(role)))
                s.run(sql.SQL("revoke all on schema {} from {}").format(_i(schema), _i(role)))
                s.run(sql.SQL("alter default privileges for role {} in schema {} revoke all on tables from {}").format(
                    _i(loader), _i(schema), _i(role)))
        readers = [(analyst, schema) for schema in ANALYST_SCHEMAS] + \
                  [(evaluator, schema) for schema in EVALUATOR_READ_SCHEMAS]
        for role, schema in readers:
            s.run(sql.SQL("grant usage on schema {} to {}").format(_i(schema), _i(role)))
            s.run(sql.SQL("grant select on all tables in schema {} to {}").format(_i(schema), _i(role)))
            s.run(sql.SQL("alter default privileges for role {} in schema {} grant select on tables to {}").format(
                _i(loader), _i(schema), _i(role)),
                note=f"{role}: USAGE on schema {schema}, SELECT on its tables and views (and on those "
                     f"{loader} creates there later)")
        s.run(sql.SQL("grant usage on schema {} to {}").format(_i(RAW_SCHEMA), _i(evaluator)))
        for table in EVALUATOR_RAW_TABLES:
            if s.run("select to_regclass(%s) is not null", [f"{RAW_SCHEMA}.{table}"])[0][0]:
                s.run(sql.SQL("grant select on {} to {}").format(_i(RAW_SCHEMA, table), _i(evaluator)),
                      note=f"{evaluator}: SELECT on {RAW_SCHEMA}.{table} (stale_source), nothing else in {RAW_SCHEMA}")
            else:
                s.report.append(f"{evaluator}: {RAW_SCHEMA}.{table} does not exist yet (stale_source); "
                                f"run again after the first extract")
        a = _i(ALERTS_SCHEMA)
        s.run(sql.SQL("grant usage, create on schema {} to {}").format(a, _i(evaluator)))
        s.run(sql.SQL("grant select, insert, update, delete on all tables in schema {} to {}").format(a, _i(evaluator)))
        s.run(sql.SQL("grant usage, select, update on all sequences in schema {} to {}").format(a, _i(evaluator)))
        s.run(sql.SQL("alter default privileges for role {} in schema {} "
                      "grant select, insert, update, delete on tables to {}").format(_i(loader), a, _i(evaluator)))
        s.run(sql.SQL("alter default privileges for role {} in schema {} "
                      "grant usage, select, update on sequences to {}").format(_i(loader), a, _i(evaluator)),
              note=f"{evaluator}: USAGE, CREATE on schema {ALERTS_SCHEMA}; SELECT, INSERT, UPDATE, DELETE on "
                   f"its tables and sequences (and on those {loader} creates there later)")
        s.run(sql.SQL("alter default privileges for role {} in schema {} grant all on tables to {}").format(
            _i(evaluator), a, _i(loader)),
            note=f"{loader}: every privilege on the tables {evaluator} creates in {ALERTS_SCHEMA}")
        ok = True
    finally:
        s.close(ok)
    return s.report


def setup_roles(warehouse: Location, source: Location | None = None, names: RoleNames | None = None,
                passwords: dict[str, str] | None = None, login_without_password: bool = True) -> list[str]:
    """Every role: the source reader on ``source`` (when given), the others on ``warehouse``.
    Idempotent. The lines of what was granted (passwords masked)."""
    names = names or RoleNames()
    if not warehouse.is_postgres or (source is not None and not source.is_postgres):
        raise ValueError("roles are PostgreSQL roles: give postgresql:// DSNs (a DuckDB file has no roles)")
    passwords = passwords_from_env() if passwords is None else passwords
    report = []
    if source is not None:
        report += setup_source(source, names, passwords, login_without_password)
    report += setup_warehouse(warehouse, names, passwords, login_without_password)
    return report


__all__ = ["ROLES", "RoleNames", "WAREHOUSE_SCHEMAS", "passwords_from_env", "scram_verifier", "setup_roles",
           "setup_source", "setup_warehouse", "source_relations"]
