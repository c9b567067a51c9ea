"""The incremental rebuilds of history-sized tables — int_recovery_incidents, int_job_runs,
mart_job_performance (each restarts from a horizon and carries what came before) and the
co-logging hours under int_error_family_co_logging: a warehouse
built day by day, then hour by hour, holds the rows a fresh warehouse built once in full at the
same as_of holds, and re-running a build changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from dbquery import query_location

from orchestration.lib.dbt_env import dbt_env, dbt_target
from orchestration.lib.settings import DBT_PROJECT_DIR, Location

def _round(column: str) -> str:
    return f"round(cast({column} as numeric), 6)"


# model -> (columns compared, order); _build_id / _built_at differ by design
MODELS = {
    "intermediate.int_recovery_incidents": (
        "incident_id, subject_type, subject, started_at, last_error_at, n_errors, recovery_basis, "
        f"recovered_at, is_recovered, {_round('recovery_minutes')}, {_round('open_minutes_at_as_of')}",
        "2, 3, 4"),
    "intermediate.int_job_runs": (
        "job_run_id, job_name, run_at, run_started_at, run_ended_at, observed_at, outcome, "
        f"{_round('duration_minutes')}, inferred_from, sequence_in_source, fired_at, next_fired_at",
        "1"),
    "marts.mart_job_performance": (
        "job_name, period, period_start, period_end, is_partial, runs, successes, failures, skips, "
        f"unknown_outcomes, {_round('failure_rate')}, longest_failure_streak, current_failure_streak, "
        f"runs_with_duration, {_round('duration_p50_minutes')}, {_round('duration_p90_minutes')}, "
        f"{_round('duration_p95_minutes')}, {_round('duration_max_minutes')}, slow_runs, last_success_at, "
        f"{_round('minutes_since_last_success')}, is_stale, {_round('overlap_share')}, "
        f"is_overlap_above_target, overlap_null_reason, {_round('known_run_minutes')}",
        "1, 2, 3"),
    "intermediate.int_error_family_co_logging_hours": ("hour_start, family_a, family_b, n_events", "1, 2, 3"),
    "intermediate.int_error_family_co_logging": (
        "family_a, family_b, n_events_a, n_events_b, n_co_logged_a, n_co_logged_b, "
        f"{_round('co_logged_share_a')}, {_round('co_logged_share_b')}", "1, 2"),
}
SELECT = "+int_recovery_incidents +mart_job_performance +int_error_family_co_logging"
# a job-runs horizon of 6 h: the hourly step then rebuilds mart_job_performance from Monday
# 2026-06-01 and carries each job's streak and last success from the Sunday before
VARS = {"job_runs_rebuild_hours": 2}
END = datetime(2026, 6, 3, tzinfo=timezone.utc)
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
         "--select", SELECT, "--vars", json.dumps({**VARS, "as_of": as_of.isoformat()})],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def _rows(warehouse: Location) -> dict[str, list[tuple]]:
    return {model: query_location(warehouse, f"select {columns} from {model} order by {order}")
            for model, (columns, order) in MODELS.items()}


def _build_ids(warehouse: Location, model: str) -> int:
    return query_location(warehouse, f"select count(distinct _build_id) from {model}")[0][0]


def _built_at_count(warehouse: Location, model: str) -> int:
    return query_location(warehouse, f"select count(distinct _built_at) from {model}")[0][0]


def _back_date_an_error(source: Location, warehouse: Location, as_of: datetime) -> tuple[str, datetime, int]:
    """Insert into the source a copy of the first error of the latest quiet-gap incident that
    recovered 6 to 36 hours before as_of (the latest: so the rebuild stays after Monday
    2026-06-01 and the test still sees periods kept from an earlier build), one second later (the same family, so it joins that incident);
    returns the incident's subject, start and error count before."""
    subject, started_at, n_errors = query_location(warehouse, f"""
        select subject, started_at, n_errors from intermediate.int_recovery_incidents
        where subject_type = 'family' and recovery_basis = 'errors_stopped' and is_recovered
          and recovered_at between timestamptz '{as_of.isoformat()}' - interval '36 hours'
                               and timestamptz '{as_of.isoformat()}' - interval '6 hours'
        order by started_at desc limit 1""")[0]
    event_id = query_location(warehouse, f"""
        select event_id from intermediate.int_events_classified
        where error_family = '{subject}' and created_at = timestamptz '{started_at.isoformat()}' limit 1""")[0][0]
    with psycopg.connect(source.dsn, autocommit=True) as conn:
        conn.execute(f"""
        insert into system_events (event_type, event_data, metadata, severity, message, component, "timestamp", created_at)
        select event_type, event_data, metadata, severity, message, component,
               "timestamp" + interval '1 second', created_at + interval '1 second'
        from system_events where id::text = '{event_id}'""")
    return subject, started_at, n_errors


def _back_date_a_job_failure(source: Location, warehouse: Location, as_of: datetime) -> tuple[str, datetime]:
    """Insert into the source a failure of the latest successful timer-fired run 6 to 20 hours
    before as_of, 30 seconds after its firing (committed late, as if by a slow writer): the run
    becomes a failure. Returns the job and the firing."""
    job, fired_at = query_location(warehouse, f"""
        select job_name, fired_at from intermediate.int_job_runs
        where outcome = 'success' and inferred_from = 'timer_fired'
          and fired_at between timestamptz '{as_of.isoformat()}' - interval '20 hours'
                           and timestamptz '{as_of.isoformat()}' - interval '6 hours'
        order by fired_at desc limit 1""")[0]
    with psycopg.connect(source.dsn, autocommit=True) as conn:
        conn.execute("""insert into system_events (event_type, severity, message, component, "timestamp", created_at)
                        values (%s, 'error', 'late failure', 'scheduler', %s, %s)""",
                     (f"{job}_job_execution_failed", fired_at + timedelta(seconds=30), fired_at + timedelta(seconds=30)))
    return job, fired_at


def test_incremental_rebuilds_equal_a_full_build(pg_databases, tmp_path):
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
        # the bot commits an error a day late: it joins an incident the table holds as final
        # (recovered long before the newest error), so the next run must rebuild from it
        late_subject, late_started_at, late_errors = _back_date_an_error(source, incremental["postgres"], as_of)
        late_job, late_fired_at = _back_date_a_job_failure(source, incremental["postgres"], as_of)
        for wh in incremental.values():
            extract_all(source, wh)
        each(_dbt, [(wh, as_of, tmp_path / f"inc_{kind}") for kind, wh in incremental.items()])
        rows = {kind: _rows(wh) for kind, wh in incremental.items()}
        for kind, wh in incremental.items():
            incidents = rows[kind]["intermediate.int_recovery_incidents"]
            assert incidents and any(not r[8] for r in incidents) and any(r[8] for r in incidents), kind
            for model in ("intermediate.int_recovery_incidents", "intermediate.int_job_runs"):
                assert _build_ids(wh, model) > 1, f"{kind}: {model} should keep rows from several runs"
            assert query_location(wh, "select count(distinct source_loaded_through) "
                                      "from intermediate.int_error_family_co_logging_hours")[0][0] > 1, kind
            assert rows[kind]["intermediate.int_error_family_co_logging"], f"{kind}: no co-logged pair"
            # the mart kept the periods before Monday 2026-06-01 from an earlier build
            assert _built_at_count(wh, "marts.mart_job_performance") > 1, kind
            late_runs = [r for r in rows[kind]["intermediate.int_job_runs"] if (r[1], r[10]) == (late_job, late_fired_at)]
            assert late_runs and late_runs[0][6] == "failure", f"{kind}: the late failure did not fail its run: {late_runs}"
            late = [r for r in incidents if (r[2], r[3]) == (late_subject, late_started_at)]
            assert late and late[0][5] == late_errors + 1, f"{kind}: the late error did not join its incident: {late}"
            performance = rows[kind]["marts.mart_job_performance"]
            assert any(r[12] > 0 for r in performance), f"{kind}: no failure streak to carry"

        # re-running the same build changes nothing; a fresh warehouse, extracted once and built
        # in full at the same as_of, has the same rows
        for wh in fresh.values():
            extract_all(source, wh)
        each(_dbt, [(wh, as_of, tmp_path / f"inc_{kind}") for kind, wh in incremental.items()]
             + [(wh, as_of, tmp_path / f"full_{kind}", WITH_SEEDS) for kind, wh in fresh.items()])
    for kind in incremental:
        rerun, full = _rows(incremental[kind]), _rows(fresh[kind])
        for model in MODELS:
            assert rerun[model] == rows[kind][model], f"{kind}: a re-run changed {model}"
            assert full[model] == rows[kind][model], f"{kind}: incremental and full builds of {model} differ"
        assert _build_ids(fresh[kind], "intermediate.int_job_runs") == 1
