"""The error classification, trend and ranking marts on a simulated month (issue 3, items 1, 3, 4).

Uses the session fixture ``simulated_warehouses`` (tests/conftest.py): 30 simulated days (seed 5)
in a PostgreSQL source, extracted into a DuckDB and a PostgreSQL warehouse, ``dbt build`` on both
with ``as_of`` = the end of the data. Checks: the hourly trend is dense (zero rows included); both
targets give the same rows; each injected error spike is the top riser (``riser_rank`` = 1: the
largest rise over the trailing 24-hour baseline) of its family series at the hour the spike covers
most; the NULL-tweet-id burst shows in the ``null_tweet_id`` category at its hour; error rates stay
within 0–1; the ranking mart is consistent; and an incremental run of the hourly mart gives the
same rows as the full build.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import duckdb
import pytest
from dbquery import error_family, normalised_rows, run_dbt_duckdb, utc

TARGETS = ("duckdb", "postgres")
HOUR = dt.timedelta(hours=1)

TRENDS_HOURLY_COLUMNS = (
    "hour_start, hour_end, is_partial, dimension, dimension_value, n_errors, n_operations, error_rate, n_errors_prev_hour, "
    "change_vs_prev_hour, pct_change_vs_prev_hour, n_errors_week_ago, change_vs_week_ago, pct_change_vs_week_ago, "
    "baseline_24h, riser_score, riser_rank"
)  # all but source_loaded_through: the build's bookkeeping, its own on each warehouse

# each model with the columns that identify a row (the comparison sorts on the whole row anyway)
MODELS = {
    "intermediate.int_events_classified": (
        "event_id, error_family, error_category, category_rule_id, severity, component, job_name, "
        "is_error, is_operation"
    ),
    "marts.mart_error_trends_hourly": TRENDS_HOURLY_COLUMNS,
    "marts.mart_error_trends_periodic": "*",
    "marts.mart_error_rank_7d_30d": "*",
}


def _main_hour(start: dt.datetime, end: dt.datetime) -> dt.datetime:
    """The UTC hour the interval [start, end) overlaps most (the earliest on a tie)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    best, best_overlap = hour, dt.timedelta(0)
    while hour < end:
        overlap = min(end, hour + HOUR) - max(start, hour)
        if overlap > best_overlap:
            best, best_overlap = hour, overlap
        hour += HOUR
    return best


@pytest.mark.parametrize("kind", TARGETS)
def test_hourly_trend_is_dense_with_zero_rows(simulated_warehouses, kind):
    sw = simulated_warehouses
    n_rows, n_distinct, first, last = sw.query(kind, """
        select count(*), count(distinct hour_start), min(hour_start), max(hour_start)
        from marts.mart_error_trends_hourly where dimension = 'total'
    """)[0]
    first, last = utc(first), utc(last)
    assert n_rows == n_distinct == (last - first) // HOUR + 1
    # the spine runs to the last hour before as_of and starts at the first simulated hour
    assert last == utc(sw.as_of) - HOUR
    assert (last - first) // HOUR + 1 >= sw.days * 24 - 1
    # every series is dense from its first hour to the end; hours without errors are 0 rows
    gaps = sw.query(kind, """
        select dimension, dimension_value, count(*) as n_rows, min(hour_start), max(hour_start)
        from marts.mart_error_trends_hourly
        group by dimension, dimension_value
    """)
    assert len(gaps) > 20
    for dimension, value, rows, lo, hi in gaps:
        assert utc(hi) == last, (dimension, value)
        assert rows == (utc(hi) - utc(lo)) // HOUR + 1, (dimension, value)
    n_zero = sw.query(kind, "select count(*) from marts.mart_error_trends_hourly where n_errors = 0")[0][0]
    assert n_zero > 0
    dims = {r[0] for r in sw.query(kind, "select distinct dimension from marts.mart_error_trends_hourly")}
    assert dims == {"total", "family", "category", "severity", "component", "job"}


def test_duckdb_and_postgres_marts_are_identical(simulated_warehouses):
    sw = simulated_warehouses
    for model, columns in MODELS.items():
        sql = f"select {columns} from {model}"
        duck, pg = normalised_rows(sw.query("duckdb", sql)), normalised_rows(sw.query("postgres", sql))
        assert len(duck) > 0, model
        assert len(duck) == len(pg), model
        diff = [pair for pair in zip(duck, pg) if pair[0] != pair[1]]
        assert not diff, (model, diff[:3])


@pytest.mark.parametrize("kind", TARGETS)
def test_each_error_spike_is_the_top_riser_of_its_hour(simulated_warehouses, kind):
    sw = simulated_warehouses
    spikes = sw.incidents_of("error_spike")
    assert spikes, "the simulation should inject error spikes"
    for spike in spikes:
        family = error_family(spike["details"].get("event_type") or spike["subject"])
        hour = _main_hour(utc(spike["start"]), utc(spike["end"]))
        rows = sw.query(kind, f"""
            select dimension_value, n_errors, baseline_24h, riser_rank
            from marts.mart_error_trends_hourly
            where dimension = 'family'
              and hour_start = cast('{hour.isoformat()}' as timestamp with time zone)
              and riser_rank = 1
        """)
        assert [r[0] for r in rows] == [family], (spike["incident_id"], hour, rows)
        _, n_errors, baseline, _ = rows[0]
        assert n_errors >= 3 * max(float(baseline), 1.0), (spike["incident_id"], rows)


@pytest.mark.parametrize("kind", TARGETS)
def test_null_tweet_id_burst_shows_in_its_category(simulated_warehouses, kind):
    sw = simulated_warehouses
    bursts = sw.incidents_of("null_tweet_id_burst")
    assert bursts
    for burst in bursts:
        hour = utc(burst["start"]).replace(minute=0, second=0, microsecond=0)
        rows = sw.query(kind, f"""
            select n_errors, n_errors_prev_hour, riser_rank
            from marts.mart_error_trends_hourly
            where dimension = 'category' and dimension_value = 'null_tweet_id'
              and hour_start = cast('{hour.isoformat()}' as timestamp with time zone)
        """)
        assert len(rows) == 1, (burst["incident_id"], rows)
        n_errors, prev, rank = rows[0]
        assert n_errors >= max(5, 0.8 * burst["details"]["count"]), (burst["incident_id"], rows)
        assert n_errors > (prev or 0) and rank == 1, (burst["incident_id"], rows)


@pytest.mark.parametrize("kind", TARGETS)
def test_error_rates_within_0_and_1(simulated_warehouses, kind):
    sw = simulated_warehouses
    for model in ("marts.mart_error_trends_hourly", "marts.mart_error_trends_periodic"):
        lo, hi, n_null, n_no_ops = sw.query(kind, f"""
            select min(error_rate), max(error_rate),
                   count(case when error_rate is null then 1 end),
                   count(case when n_operations = 0 then 1 end)
            from {model}
        """)[0]
        assert 0 <= float(lo) and float(hi) <= 1, (model, lo, hi)
        assert n_null == n_no_ops, model


@pytest.mark.parametrize("kind", TARGETS)
def test_rank_mart_windows_shares_and_ranks(simulated_warehouses, kind):
    sw = simulated_warehouses
    rows = sw.query(kind, """
        select window_days, error_category, count(*), sum(share_of_errors), min(error_rank),
               min(window_end), max(window_end), sum(n_errors)
        from marts.mart_error_rank_7d_30d group by window_days, error_category
    """)
    assert {r[0] for r in rows} == {7, 30}
    for window_days, scope, n, share_sum, top_rank, end_lo, end_hi, _ in rows:
        assert abs(float(share_sum) - 1) < 1e-9 and top_rank == 1, (window_days, scope)
        assert utc(end_lo) == utc(end_hi) == utc(sw.as_of)
    totals = {(r[0], r[1]): r[7] for r in rows}
    for days in (7, 30):  # the category scopes partition the overall one
        assert sum(v for (d, s), v in totals.items() if d == days and s != "all") == totals[(days, "all")]
    # the overall 7-day count equals the hourly mart's total over the last 168 hours
    hourly = sw.query(kind, f"""
        select sum(n_errors) from marts.mart_error_trends_hourly
        where dimension = 'total'
          and hour_start >= cast('{(utc(sw.as_of) - 168 * HOUR).isoformat()}' as timestamp with time zone)
    """)[0][0]
    assert int(hourly) == totals[(7, "all")]
    # the previous 30-day window is not covered by 30 days of data: no fake risers
    assert sw.query(kind, """
        select count(*) from marts.mart_error_rank_7d_30d
        where window_days = 30 and (n_errors_prev_window is not null or is_riser)
    """)[0][0] == 0


def test_incremental_hourly_run_matches_the_full_build(simulated_warehouses, tmp_path):
    """Full-build the hourly mart up to as_of - 50 h on a copy of the DuckDB warehouse, then run
    it incrementally up to as_of: the rows must equal the fixture's full build."""
    sw = simulated_warehouses
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(sw.warehouses["duckdb"].path, copy)
    select = ["--select", "int_hour_spine", "mart_error_trends_hourly"]
    earlier = (utc(sw.as_of) - 50 * HOUR).isoformat()
    run_dbt_duckdb(["run", *select, "--full-refresh", "--vars", json.dumps({"as_of": earlier})], copy, tmp_path / "t")
    conn = duckdb.connect(str(copy), read_only=True)
    try:
        newest = conn.execute("select max(hour_start) from marts.mart_error_trends_hourly").fetchone()[0]
    finally:
        conn.close()
    assert utc(newest) == utc(sw.as_of) - 51 * HOUR
    run_dbt_duckdb(["run", *select, "--vars", json.dumps({"as_of": utc(sw.as_of).isoformat()})], copy, tmp_path / "t")
    sql = f"select {TRENDS_HOURLY_COLUMNS} from marts.mart_error_trends_hourly"
    conn = duckdb.connect(str(copy), read_only=True)
    try:
        conn.execute("set timezone = 'UTC'")
        incremental = normalised_rows(conn.execute(sql).fetchall())
    finally:
        conn.close()
    full = normalised_rows(sw.query("duckdb", sql))
    assert len(incremental) == len(full)
    assert incremental == full


def test_a_late_event_counts_in_its_hour_on_the_next_incremental_run(simulated_warehouses, tmp_path):
    """An event the extractor brings in a day late (its hot window or reconcile found it) lands
    with a new _loaded_at: the next incremental run rebuilds from its hour, not only the last
    trend_rebuild_hours, so the hour counts it."""
    sw = simulated_warehouses
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(sw.warehouses["duckdb"].path, copy)
    hour = utc(sw.as_of) - 20 * HOUR
    count_sql = ("select n_errors from marts.mart_error_trends_hourly where dimension = 'total' "
                 f"and hour_start = timestamptz '{hour.isoformat()}'")
    conn = duckdb.connect(str(copy))
    try:
        conn.execute("set timezone = 'UTC'")
        [(before,)] = conn.execute(count_sql).fetchall()
        conn.execute("insert into raw.system_events (id, event_type, event_data, severity, \"timestamp\", created_at, "
                     "_loaded_at, _row_hash) values ('late-1', 'POST_FAILED', '{\"error\": \"late\"}', 'error', ?, ?, "
                     "now(), 'h-late')", [hour + dt.timedelta(minutes=10)] * 2)
    finally:
        conn.close()
    select = ["--select", "fct_system_events", "int_events_classified", "int_hour_spine", "mart_error_trends_hourly"]
    run_dbt_duckdb(["run", *select, "--vars", json.dumps({"as_of": utc(sw.as_of).isoformat()})], copy, tmp_path / "t")
    conn = duckdb.connect(str(copy), read_only=True)
    try:
        conn.execute("set timezone = 'UTC'")
        [(after,)] = conn.execute(count_sql).fetchall()
    finally:
        conn.close()
    assert after == before + 1
