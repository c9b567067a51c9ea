"""int_recovery_incidents is incremental: a warehouse built day by day, then hour by hour, holds
the rows a fresh warehouse built once in full at the same as_of holds, and re-running a build
changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dbquery import query_location

from orchestration.lib.dbt_env import dbt_env, dbt_target
from orchestration.lib.settings import DBT_PROJECT_DIR, Location

MODEL = "int_recovery_incidents"
COLUMNS = ("incident_id, subject_type, subject, started_at, last_error_at, n_errors, recovery_basis, "
           "recovered_at, is_recovered, round(cast(recovery_minutes as numeric), 6), "
           "round(cast(open_minutes_at_as_of as numeric), 6)")
END = datetime(2026, 6, 4, tzinfo=timezone.utc)
DAYS, SEED = 4, 23  # seed 23 also injects late-committed and guard-deleted events in these days


# seeds and models, no tests: the shared fixture (conftest.simulated_warehouses) already runs
# every unit and data test on both targets
WITH_SEEDS = ["build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]


def _dbt(warehouse: Location, as_of: datetime, work: Path, command: list[str] | None = None) -> None:
    """`dbt run` (or ``command``, e.g. WITH_SEEDS) of the model and its parents. Each warehouse
    gets its own target/log directory, so partial parsing is reused between its runs and runs on
    two warehouses can go in parallel."""
    env = {**os.environ, **dbt_env(warehouse),
           "DBT_TARGET_PATH": str(work / "target"), "DBT_LOG_PATH": str(work / "logs")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *(command or ["run"]), "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target", dbt_target(warehouse),
         "--select", f"+{MODEL}", "--vars", json.dumps({"as_of": as_of.isoformat()})],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def _rows(warehouse: Location) -> list[tuple]:
    return query_location(warehouse, f"select {COLUMNS} from intermediate.{MODEL} order by 2, 3, 4")


def _build_ids(warehouse: Location) -> int:
    return query_location(warehouse, f"select count(distinct _build_id) from intermediate.{MODEL}")[0][0]


def test_recovery_incidents_incremental_equals_full_build(pg_databases, tmp_path):
    """Both targets, built in parallel from one simulated source (DuckDB and PostgreSQL)."""
    from orchestration.lib.extract.engine import extract_all
    from orchestration.lib.simulator import simulate

    source = Location.parse(pg_databases.new("src"))
    incremental = {"duckdb": Location.parse(str(tmp_path / "inc.duckdb")),
                   "postgres": Location.parse(pg_databases.new("inc"))}
    fresh = {"duckdb": Location.parse(str(tmp_path / "full.duckdb")),
             "postgres": Location.parse(pg_databases.new("full"))}
    start = END - timedelta(days=DAYS)
    # a first build on 1 day, a step of 49 hours (longer than the 48-hour rebuild horizon: the
    # horizon falls back to the newest last_error_at in the table), then an hourly step; each
    # build at the end of the data loaded so far
    cuts = [start + timedelta(days=1), start + timedelta(days=3, hours=1), start + timedelta(days=3, hours=2)]
    lo = start
    with ThreadPoolExecutor(max_workers=4) as pool:
        def each(fn, items):
            for job in [pool.submit(fn, *item) for item in items]:
                job.result()

        for i, cut in enumerate(cuts):
            simulate(source, days=DAYS, seed=SEED, end=END, write_from=lo, write_to=cut, reset=(i == 0),
                     truth_path=tmp_path / "truth.json")
            for wh in incremental.values():
                extract_all(source, wh)
            command = WITH_SEEDS if i == 0 else None
            each(_dbt, [(wh, cut, tmp_path / f"inc_{kind}", command) for kind, wh in incremental.items()])
            lo = cut
        as_of = cuts[-1]
        rows = {kind: _rows(wh) for kind, wh in incremental.items()}
        for kind, wh in incremental.items():
            assert rows[kind] and any(not r[8] for r in rows[kind]) and any(r[8] for r in rows[kind]), kind
            assert _build_ids(wh) > 1, f"{kind}: the builds should leave rows from several runs"

        # re-running the same build changes nothing; a fresh warehouse, extracted once and built
        # in full at the same as_of, has the same rows
        for wh in fresh.values():
            extract_all(source, wh)
        each(_dbt, [(wh, as_of, tmp_path / f"inc_{kind}") for kind, wh in incremental.items()]
             + [(wh, as_of, tmp_path / f"full_{kind}", WITH_SEEDS) for kind, wh in fresh.items()])
    for kind in incremental:
        assert _rows(incremental[kind]) == rows[kind], f"{kind}: a re-run changed the table"
        assert _rows(fresh[kind]) == rows[kind], f"{kind}: incremental and full builds differ"
        assert _build_ids(fresh[kind]) == 1
