"""Least-privilege roles (``ops-warehouse admin roles``) on real PostgreSQL: each role connects
(trust authentication locally, so a DSN with ``user=<role>`` logs in) and is shown what it can
and cannot do. The whole main job runs with only the source reader and the loader in
tests/test_pipeline_end_to_end.py.

Roles are cluster-global and tests may run concurrently: every module uses its own role prefix,
and the roles are dropped (with what they own) at teardown."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
from pg_roles import as_user, denied, drop_roles, rows

from orchestration.lib.admin.roles import RoleNames, scram_verifier, setup_roles
from orchestration.lib.settings import Location

END = datetime(2026, 11, 1, tzinfo=timezone.utc)


class Env:
    def __init__(self, source: str, warehouse: str, names: RoleNames) -> None:
        self.source, self.warehouse, self.names = source, warehouse, names

    def wh(self, role: str) -> str:
        return as_user(self.warehouse, self.names.name(role))

    def src(self) -> str:
        return as_user(self.source, self.names.source_reader)


@pytest.fixture(scope="module")
def env(module_pg_databases):
    """A small source (the bot's tables, a view, and a table no role may read) and an empty
    warehouse, with the roles set up; the loader has created a table in raw, marts and alerts."""
    from orchestration.lib.source.schema import create_source_schema

    source = module_pg_databases.new("src")
    warehouse = module_pg_databases.new("wh")
    create_source_schema(Location.parse(source))
    rows(source, "create table bot_secrets (token text); insert into bot_secrets values ('t0ps3cret')")
    names = RoleNames.with_prefix(f"t{uuid.uuid4().hex[:6]}_")
    try:
        setup_roles(Location.parse(warehouse), Location.parse(source), names, passwords={})
        e = Env(source, warehouse, names)
        for stmt in ("create table raw.events (id int)", "insert into raw.events values (1)",
                     "create table marts.mart_x (n int)", "insert into marts.mart_x values (7)",
                     "create table alerts.ledger_x (rule text)"):
            rows(e.wh("loader"), stmt)
        yield e
    finally:
        drop_roles(names, [warehouse, source])


def test_the_analyst_reads_marts_only(env):
    analyst = env.wh("analyst")
    assert rows(analyst, "select n from marts.mart_x") == [(7,)]  # created after the grants: default privileges
    assert denied(analyst, "select * from raw.events")
    assert denied(analyst, "select * from alerts.ledger_x")
    assert denied(analyst, "insert into marts.mart_x values (8)")
    assert denied(analyst, "create table marts.mine (n int)")
    assert denied(analyst, "create schema mine")


def test_the_alert_evaluator_reads_marts_and_writes_alerts_only(env):
    evaluator = env.wh("alert_evaluator")
    assert rows(evaluator, "select n from marts.mart_x") == [(7,)]
    rows(evaluator, "insert into alerts.ledger_x values ('r')")
    assert rows(evaluator, "select rule from alerts.ledger_x") == [("r",)]
    rows(evaluator, "create table alerts.own_table (n int)")  # CREATE in alerts
    assert denied(evaluator, "create table raw.x (n int)")
    assert denied(evaluator, "select * from raw.events")
    assert denied(evaluator, "insert into marts.mart_x values (8)")
    assert denied(evaluator, "delete from marts.mart_x")
    assert denied(evaluator, "create schema mine")


def test_the_source_reader_reads_the_configured_source_relations_only(env):
    reader = env.src()
    for relation in ("system_events", "job_heartbeats", "content_generation_metadata_comprehensive",
                     "posting_attempts", "metrics_scraper_runs", "content_metadata"):
        assert rows(reader, f"select count(*) from {relation}") == [(0,)], relation
    assert denied(reader, "select * from bot_secrets")
    assert denied(reader, "insert into system_events default values")
    assert denied(reader, "delete from job_heartbeats")
    assert denied(reader, "create table x (n int)")
    # and it has nothing in the warehouse
    assert not rows(env.warehouse, f"select 1 from information_schema.role_table_grants "
                                   f"where grantee = '{env.names.source_reader}'")


def test_roles_are_idempotent_and_passwords_are_never_printed(env, monkeypatch, capsys):
    from orchestration.lib.cli import main

    prefix = env.names.loader[: -len("loader")]
    monkeypatch.setenv("OPS_ROLE_PASSWORD_ANALYST", "pa55-w0rd-analyst")
    args = ["admin", "roles", "--warehouse-url", env.warehouse, "--source-url", env.source, "--role-prefix", prefix]
    assert main(args) == 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pa55-w0rd-analyst" not in out
    assert f"role {env.names.analyst} (analyst): updated, LOGIN, password ***" in out
    assert f"{env.names.source_reader}: SELECT on public.system_events" in out
    assert "bot_secrets" not in out
    stored = rows(env.warehouse, f"select rolpassword from pg_authid where rolname = '{env.names.analyst}'")[0][0]
    assert stored.startswith("SCRAM-SHA-256$4096:") and "pa55" not in stored
    # the grants still hold after the second run
    assert rows(env.wh("analyst"), "select n from marts.mart_x") == [(7,)]
    assert denied(env.wh("analyst"), "select * from raw.events")


def test_scram_verifier_is_what_postgres_would_store():
    # the verifier's shape and determinism for a given salt (PostgreSQL verifies logins against it)
    v = scram_verifier("pencil", salt=b"0123456789abcdef")
    assert v == scram_verifier("pencil", salt=b"0123456789abcdef") != scram_verifier("pencil")
    head, keys = v.rsplit("$", 1)
    assert head == "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==" and len(keys.split(":")) == 2


def test_the_alert_evaluator_creates_the_alerts_tables_in_the_existing_schema(env):
    """The ledger's and the outbox's DDL run only for what is missing: PostgreSQL checks CREATE on
    the database for ``create schema if not exists`` and ownership for ``create index if not
    exists`` even when they exist, and the evaluator has neither."""
    from orchestration.lib.alerts import ledger, outbox

    evaluator = Location.parse(env.wh("alert_evaluator"))
    ledger.ensure_schema(evaluator)
    outbox.ensure_outbox(evaluator)
    outbox.ensure_outbox(evaluator)  # idempotent
    tables = {t for (t,) in rows(env.wh("alert_evaluator"),
                                 "select tablename from pg_tables where schemaname = 'alerts'")}
    assert {"ledger", "transitions", "silences", "outbox"} <= tables


def test_custom_rules_run_as_the_alert_evaluator_when_configured(env, monkeypatch):
    """OPS_ALERT_EVALUATOR_URL: custom SQL runs as ops_alert_evaluator (marts yes, raw no), and
    the ledger is written as it too (alerts only)."""
    from datetime import timedelta

    from orchestration.lib.alerts.ledger import evaluate, observe
    from orchestration.lib.alerts.rules import RuleSpec, Threshold

    def rule(name: str, query: str) -> RuleSpec:
        return RuleSpec(name=name, kind="sql", condition=Threshold(">", 0), window=timedelta(hours=1), sql=query)

    monkeypatch.setenv("OPS_ALERT_EVALUATOR_URL", env.wh("alert_evaluator"))
    rules = [rule("marts_ok", "select 'x', sum(n) from marts.mart_x"),
             rule("raw_denied", "select 'x', count(*) from raw.events")]
    obs = observe(Location.parse(env.wh("loader")), rules, END)
    assert [(c.rule, c.value) for c in obs.conditions] == [("marts_ok", 7.0)]
    assert "rule 'raw_denied' refused: permission denied" in obs.errors["raw_denied"], obs.errors
    notes = evaluate(Location.parse(env.wh("alert_evaluator")), obs.conditions, END, obs.evaluated)
    assert [n.rule for n in notes] == ["marts_ok"]
    assert rows(env.wh("loader"), "select rule from alerts.ledger") == [("marts_ok",)]


def test_deploy_roles_sql_grants_the_same(module_pg_databases):
    """deploy/roles.sql (psql) on fresh databases: the same can and cannot as the CLI."""
    import shutil
    import subprocess
    from pathlib import Path

    from orchestration.lib.source.schema import create_source_schema

    if shutil.which("psql") is None:
        pytest.skip("psql not installed")
    source, warehouse = module_pg_databases.new("ssrc"), module_pg_databases.new("swh")
    create_source_schema(Location.parse(source))
    rows(source, "create table bot_secrets (token text)")
    names = RoleNames.with_prefix(f"t{uuid.uuid4().hex[:6]}_")
    script = Path(__file__).resolve().parents[1] / "deploy" / "roles.sql"
    variables = {"source_db": urlsplit(source).path.lstrip("/"), "warehouse_db": urlsplit(warehouse).path.lstrip("/"),
                 "reader_role": names.source_reader, "loader_role": names.loader, "analyst_role": names.analyst,
                 "evaluator_role": names.alert_evaluator}
    try:
        for _ in range(2):  # idempotent
            done = subprocess.run(["psql", as_user(warehouse, "postgres"), "-X", "-f", str(script),
                                   *(f"-v{k}={v}" for k, v in variables.items())],
                                  capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                                       "OPS_ROLE_PASSWORD_ANALYST": "s3cr3t-pw"})
            assert done.returncode == 0, done.stderr
            assert "s3cr3t-pw" not in done.stdout + done.stderr
        assert f"{names.source_reader}: SELECT on public.content_generation_metadata_comprehensive" in done.stdout
        e = Env(source, warehouse, names)
        rows(e.wh("loader"), "create table raw.events (id int); create table marts.mart_x (n int); "
                             "create table alerts.ledger_x (rule text)")
        assert rows(e.wh("analyst"), "select * from marts.mart_x") == []
        assert denied(e.wh("analyst"), "select * from raw.events")
        assert denied(e.wh("analyst"), "select * from alerts.ledger_x")
        rows(e.wh("alert_evaluator"), "insert into alerts.ledger_x values ('r')")
        assert denied(e.wh("alert_evaluator"), "create table raw.x (n int)")
        assert rows(e.src(), "select count(*) from content_metadata") == [(0,)]
        assert denied(e.src(), "select * from bot_secrets")
        assert denied(e.src(), "insert into system_events default values")
    finally:
        drop_roles(names, [warehouse, source])
