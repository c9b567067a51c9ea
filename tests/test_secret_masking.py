"""Passwords are never shown: masked in every DSN form wherever a location is shown, absent from
connection errors, and never stored by Dagster (run configuration, event log, compute logs) or
printed by the CLI — checked by running a real Dagster job and the CLI with a unique marker
password (local PostgreSQL trusts, so any password is accepted) and searching every file of the
Dagster home and every output for it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest

from orchestration.lib.db import ConnectError, postgres_connect
from orchestration.lib.extract.readers import PostgresArrowSession
from orchestration.lib.settings import Location, mask_secrets
from orchestration.lib.simulator import simulate

END = datetime(2026, 10, 15, tzinfo=timezone.utc)
CLI = Path(sys.executable).parent / "ops-warehouse"
TABLES = ["system_events", "metrics_scraper_runs"]


def _marker() -> str:
    return f"S3cr3t-marker-{uuid.uuid4().hex}"


@pytest.mark.parametrize("dsn", [
    "postgresql://reader:{pw}@db:5432/bot",
    "postgresql://reader@db:5432/bot?sslmode=verify-full&password={pw}&application_name=x",
    "postgresql://db/bot?password={pw}",
    "host=db password={pw} dbname=bot",
    "host=db password='{pw} with spaces' dbname=bot",
    "host=db password = '{pw} \\' quoted' dbname=bot",
    "host=db dbname=bot password={pw}\\ escaped",
])
def test_every_dsn_form_is_masked(dsn):
    pw = _marker()
    location = Location.parse(dsn.format(pw=pw))
    assert location.params()["password"].startswith(pw)  # the DSN means this password
    for shown in (location.redacted(), repr(location), str(location), f"{location}", mask_secrets(location.dsn)):
        assert pw not in shown and "***" in shown, shown
        assert "with spaces" not in shown and "quoted" not in shown and "escaped" not in shown, shown
    assert "db" in location.redacted()


def test_masking_in_free_text():
    pw = _marker()
    text = (f"PGPASSWORD={pw} psql; {{'password': '{pw}', 'host': 'h'}}; conninfo password={pw} port=1; "
            f"see postgresql://u:{pw}@h/db?password={pw}&sslmode=require")
    masked = mask_secrets(text)
    assert pw not in masked and masked.count("***") == 5, masked
    assert "sslmode=require" in masked and "port=1" in masked
    # a password known from the configured locations is masked even where no DSN syntax shows it
    os.environ["OPS_WAREHOUSE_URL"] = f"postgresql://u:{pw}@h/db"
    try:
        assert mask_secrets(f"driver said: bad password {pw}!") == "driver said: bad password ***!"
    finally:
        del os.environ["OPS_WAREHOUSE_URL"]


def test_connection_errors_carry_no_password(pg_databases):
    pw = _marker()
    missing_db = pg_databases.new("x").rsplit("/", 1)[0] + "/no_such_db"
    for bad in (_with_password(missing_db, pw, "userinfo"), _with_password(missing_db, pw, "keyvalue"),
                f"postgresql://127.0.0.1:1/db?user=u&password={pw}",
                f"host=127.0.0.1 port=1 password='{pw} x' dbname=db"):
        location = Location.parse(bad)
        with pytest.raises(ConnectError) as psycopg_failure:
            postgres_connect(location)
        with pytest.raises(ConnectError) as adbc_failure:
            PostgresArrowSession(location)
        for failure in (psycopg_failure, adbc_failure):
            text = str(failure.value) + repr(failure.value) + str(failure.value.__cause__ or "")
            assert pw not in text and "cannot connect to PostgreSQL" in text, text
            assert failure.value.__cause__ is None  # the driver's exception is not chained


# ---------------------------------------------------------------------------------------------
# Dagster and the CLI


def extract_only_job() -> dg.JobDefinition:
    """The extraction assets with the code location's own resource (``ops_locations_from_env``:
    environment references when OPS_SOURCE_URL / OPS_WAREHOUSE_URL are set)."""
    from orchestration.defs.extract.assets import extract_assets
    from orchestration.defs.resources import ops_locations_from_env

    selected = [a for a in extract_assets if any(k.path[-1] in TABLES for k in a.keys)]
    return dg.Definitions(
        assets=selected, jobs=[dg.define_asset_job("extract_only", selection=dg.AssetSelection.assets(*selected))],
        resources={"ops_locations": ops_locations_from_env()},
        executor=dg.in_process_executor,
    ).resolve_job_def("extract_only")


def _files_containing(folder: Path, needle: str) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path))
    return found


def _with_password(dsn: str, pw: str, form: str) -> str:
    """``dsn`` (postgresql://postgres@host:port/db) with the password in the userinfo, in the
    query string or as a quoted key=value."""
    location = Location.parse(dsn)
    p = location.params()
    if form == "userinfo":
        return dsn.replace("://", f"://{p.get('user', 'postgres')}:{quote(pw, safe='')}@", 1).replace(
            f"@{p.get('user', 'postgres')}@", "@", 1)
    if form == "query":
        return f"{dsn}{'&' if '?' in dsn else '?'}password={quote(pw, safe='')}"
    return (f"host={p['host']} port={p.get('port', '5432')} user={p.get('user', 'postgres')} "
            f"dbname={p['dbname']} password = '{pw} and more'")


@pytest.fixture(scope="module")
def marked_source(module_pg_databases, tmp_path_factory) -> str:
    dsn = module_pg_databases.new("src")
    simulate(Location.parse(dsn), days=0.5, seed=13, end=END,
             truth_path=tmp_path_factory.mktemp("truth") / "truth.json")
    return dsn


def test_the_password_never_reaches_dagster_storage(marked_source, pg_databases, tmp_path, monkeypatch):
    pw_source, pw_warehouse = _marker(), _marker()
    source = _with_password(marked_source, pw_source, "query")
    warehouse = _with_password(pg_databases.new("wh"), pw_warehouse, "keyvalue")
    broken_source = _with_password(marked_source.rsplit("/", 1)[0] + "/no_such_db", pw_source, "userinfo")
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    outcomes = {}
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        for label, source_url in (("ok", source), ("unreachable source", broken_source)):
            monkeypatch.setenv("OPS_SOURCE_URL", source_url)
            monkeypatch.setenv("OPS_WAREHOUSE_URL", warehouse)
            result = dg.execute_job(dg.reconstructable(extract_only_job), instance=instance, raise_on_error=False)
            outcomes[label] = result
            run = instance.get_run_by_id(result.run_id)
            assert pw_source not in repr(run.run_config) and pw_warehouse not in repr(run.run_config)
        assert outcomes["ok"].success
        assert not outcomes["unreachable source"].success
        failures = [e.step_failure_data.error.message + (e.step_failure_data.user_failure_data.description or "")
                    for e in outcomes["unreachable source"].all_events if e.event_type_value == "STEP_FAILURE"]
        assert failures and all("cannot connect to PostgreSQL" in f and "***" in f for f in failures), failures
        logs = [str(e.message) for r in outcomes.values() for e in instance.all_logs(r.run_id)]
    assert logs
    for pw in (pw_source, pw_warehouse):
        assert not any(pw in line for line in logs)
        assert _files_containing(home, pw) == [], pw
    # the storage is where we looked: the runs and their events are in these files
    assert _files_containing(home, outcomes["ok"].run_id)


def test_the_cli_never_prints_the_password(marked_source, pg_databases, tmp_path):
    pw_source, pw_warehouse = _marker(), _marker()
    runs = {
        "ok": {"OPS_SOURCE_URL": _with_password(marked_source, pw_source, "query"),
               "OPS_WAREHOUSE_URL": _with_password(pg_databases.new("wh"), pw_warehouse, "keyvalue")},
        "unreachable warehouse": {
            "OPS_SOURCE_URL": _with_password(marked_source, pw_source, "userinfo"),
            "OPS_WAREHOUSE_URL": _with_password(marked_source.rsplit("/", 1)[0] + "/no_such_db", pw_warehouse,
                                                "query")},
    }
    outputs = {}
    for label, env in runs.items():
        proc = subprocess.run([str(CLI), "extract", *sum((["--table", t] for t in TABLES), [])],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        outputs[label] = proc
        for pw in (pw_source, pw_warehouse):
            assert pw not in proc.stdout + proc.stderr, (label, proc.stdout, proc.stderr)
    assert outputs["ok"].returncode == 0, outputs["ok"].stderr
    assert "password=***" in outputs["ok"].stdout  # the locations are shown, masked
    assert outputs["unreachable warehouse"].returncode != 0
    assert "cannot connect to PostgreSQL" in outputs["unreachable warehouse"].stderr
    assert "Traceback" not in outputs["unreachable warehouse"].stderr
