"""Job performance (dim_jobs, int_job_runs, int_job_overlap_days, mart_job_performance) on a
simulated month.

Uses the session fixture ``simulated_warehouses`` (tests/conftest.py): 30 simulated days (seed 5)
extracted into a DuckDB and a PostgreSQL warehouse and built with ``as_of`` = the end of the
data. The injected job failure streaks (orchestration/lib/simulator/incidents.py: a run of
exactly ``streak_length`` failed runs of the job, natural runs stop at 4) must show up as the
longest streaks, with their exact length; both targets must agree row for row.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from dbquery import normalised_rows, query_location, run_dbt_duckdb, utc

from orchestration.lib.settings import Location

TARGETS = ("duckdb", "postgres")

# every relation this module covers, with the columns that order its rows deterministically
MODELS = {
    "marts.dim_jobs": "job_name",
    "intermediate.int_job_runs": "job_name, run_at, inferred_from, sequence_in_source",
    "intermediate.int_job_overlap_days": "job_name, run_date",
    "marts.mart_job_performance": "job_name, period, period_start",
}


def _streak_truths(sw) -> list[dict]:
    truths = sw.incidents_of("job_failure_streak")
    assert truths, "the simulated month should hold injected job failure streaks"
    return truths


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("period", ("day", "week"))
def test_injected_failure_streak_is_the_longest_with_its_length(simulated_warehouses, kind, period):
    sw = simulated_warehouses
    longest = dict(sw.query(kind, f"""
        select job_name, max(longest_failure_streak)
        from marts.mart_job_performance where period = '{period}'
        group by job_name"""))
    truths = _streak_truths(sw)
    injected = {}
    for truth in truths:
        job = truth["subject"]
        injected[job] = max(injected.get(job, 0), int(truth["details"]["streak_length"]))
    for job, length in injected.items():
        assert longest.get(job) == length, (job, length, longest.get(job))
    # natural failure runs are capped below the injected ones: no other job reaches them
    shortest_injected = min(injected.values())
    others = {job: n for job, n in longest.items() if job not in injected}
    assert others and max(others.values()) < shortest_injected, others


@pytest.mark.parametrize("kind", TARGETS)
def test_streak_ends_with_a_success_and_is_not_current_at_the_end(simulated_warehouses, kind):
    """The streak is over by as_of (the simulator ends it with a success)."""
    sw = simulated_warehouses
    for truth in _streak_truths(sw):
        rows = sw.query(kind, f"""
            select current_failure_streak from marts.mart_job_performance
            where job_name = '{truth["subject"]}' and period = 'day'
            order by period_start desc limit 1""")
        assert rows and rows[0][0] < int(truth["details"]["streak_length"])


@pytest.mark.parametrize("kind", TARGETS)
def test_every_simulated_job_is_known_and_measured(simulated_warehouses, kind):
    sw = simulated_warehouses
    jobs = dict(sw.query(kind, "select job_name, has_settings from marts.dim_jobs"))
    assert len(jobs) >= 14 and all(jobs.values()), jobs
    rows = sw.query(kind, """
        select count(*), sum(runs), min(failure_rate), max(failure_rate),
               count(overlap_share), max(duration_max_minutes)
        from marts.mart_job_performance where period = 'week'""")
    count, runs, min_rate, max_rate, with_overlap, longest = rows[0]
    assert count > 0 and runs > 0
    assert 0 <= min_rate <= max_rate <= 1
    assert with_overlap > 0 and longest > 0


@pytest.mark.parametrize("relation", sorted(MODELS))
def test_duckdb_and_postgres_are_identical(simulated_warehouses, relation):
    sw = simulated_warehouses
    schema, table = relation.split(".")
    columns = [name for (name,) in sw.query("duckdb", f"""
        select column_name from information_schema.columns
        where table_schema = '{schema}' and table_name = '{table}' order by ordinal_position""")
        # which build wrote a row, when, and the load stamps it had seen (watermarks)
        if name not in ("_build_id", "_built_at", "_rebuilt_from", "source_loaded_through",
                        "scraper_loaded_through", "job_runs_built_through")]
    sql = f"select {', '.join(columns)} from {relation} order by {MODELS[relation]}"
    duck, pg = normalised_rows(sw.query("duckdb", sql)), normalised_rows(sw.query("postgres", sql))
    assert duck, relation
    assert len(duck) == len(pg), relation
    diffs = [(columns[i], d[:3], d[i], p[i]) for d, p in zip(duck, pg) if d != p
             for i in range(len(columns)) if d[i] != p[i]]
    assert not diffs, diffs[:10]


def test_incremental_overlap_days_equal_the_full_build(simulated_warehouses, tmp_path):
    """int_job_overlap_days is incremental by day: full-built at as_of - 4 days on a copy of the
    DuckDB warehouse, then run at as_of (int_job_runs rebuilt too), it must hold the fixture's
    full build's rows: the old days kept, the newer ones rebuilt."""
    sw = simulated_warehouses
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(sw.warehouses["duckdb"].path, copy)
    select = ["--select", "int_job_runs", "int_job_overlap_days"]
    as_of = utc(sw.as_of)
    steps = [(as_of - timedelta(days=4), ["--full-refresh"]), (as_of, [])]
    for step, extra in steps:
        run_dbt_duckdb(["run", *select, *extra, "--vars", json.dumps({"as_of": step.isoformat()})],
                       copy, tmp_path / "t")
    sql = "select job_name, run_date, run_us, overlap_us from intermediate.int_job_overlap_days order by 1, 2"
    incremental = normalised_rows(query_location(Location.parse(str(copy)), sql))
    full = normalised_rows(sw.query("duckdb", sql))
    assert len(full) > 14 * 20
    assert incremental == full
