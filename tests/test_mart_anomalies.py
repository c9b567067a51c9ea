"""mart_anomalies: the dbt series view counts what SERIES_SQL counts, the Python scorer writes
marts.mart_anomalies idempotently on both engines, and the Dagster asset's checks warn / fail on
new anomalies only."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import psycopg
import pytest
from dbquery import normalised_rows, utc

from orchestration.defs.quality.anomalies import (
    ASSET_KEY,
    NO_NEW_ANOMALIES,
    NO_NEW_CRITICAL_ANOMALIES,
    anomaly_assets,
    no_new_anomalies,
    no_new_critical_anomalies,
)
from orchestration.defs.resources import OpsLocations
from orchestration.lib.anomaly.series import SERIES_SQL, STOP_REASONS
from orchestration.lib.anomaly.warehouse import COLUMNS, TABLE, AnomalyRow, refresh_anomalies
from orchestration.lib.settings import Location

HISTORY_DAYS = 35


# ---------------------------------------------------------------------------------------------
# the dbt series = SERIES_SQL's series


def _reference_series(duckdb_warehouse: Location, as_of: datetime) -> list[tuple]:
    """SERIES_SQL itself, run on the warehouse's copy of the source table (raw.system_events,
    payload columns as JSON text, deleted rows left out: the source no longer has them)."""
    conn = duckdb.connect()
    try:
        conn.execute("set timezone = 'UTC'")
        conn.execute(f"attach '{duckdb_warehouse.path}' as wh (read_only)")
        conn.execute("create temp view system_events as "
                     "select * from wh.raw.system_events where _deleted_at is null")
        sql = SERIES_SQL.replace("$stop_reasons", ", ".join(f"'{r}'" for r in STOP_REASONS))
        rows = conn.execute(sql, {"start": as_of - timedelta(days=HISTORY_DAYS), "end": as_of}).fetchall()
    finally:
        conn.close()
    return normalised_rows(rows)


@pytest.fixture(scope="module")
def reference_series(simulated_warehouses):
    return _reference_series(simulated_warehouses.warehouses["duckdb"], simulated_warehouses.as_of)


@pytest.mark.parametrize("target", ["duckdb", "postgres"])
def test_dbt_series_equal_series_sql(simulated_warehouses, reference_series, target):
    got = normalised_rows(simulated_warehouses.query(
        target, "select series, series_kind, hour_start, n_events from intermediate.int_anomaly_series_hourly "
                "where series not like 'error_category:%'"))
    assert reference_series, "the simulated month has no series rows"
    kinds = Counter(row[1] for row in reference_series)
    assert {"errors", "job_failures", "null_tweet_id", "events", "volume"} <= set(kinds)
    ref_by_series = Counter(r[0] for r in reference_series)
    got_by_series = Counter(r[0] for r in got)
    assert got_by_series == ref_by_series  # series for series: the same hours with events
    assert got == reference_series


@pytest.mark.parametrize("target", ["duckdb", "postgres"])
def test_error_category_series_count_every_error_once(simulated_warehouses, target):
    """The category series split the classified error events of the window: per hour they add up
    to the error events, and there is more than one category."""
    sw = simulated_warehouses
    by_hour = dict(normalised_rows(sw.query(target, """
        select hour_start, sum(n_events) from intermediate.int_anomaly_series_hourly
        where series like 'error_category:%' group by hour_start""")))
    window = sw.query(target, "select min(window_start), max(window_end) from intermediate.int_anomaly_series_hourly")[0]
    errors = dict(normalised_rows(sw.query(target, f"""
        select created_hour, count(*) from intermediate.int_events_classified
        where is_error and created_at >= '{window[0].isoformat()}' and created_at < '{window[1].isoformat()}'
        group by created_hour""")))
    assert len(errors) > 24 * 20
    assert by_hour == errors
    n_categories = sw.query(target, "select count(distinct series) from intermediate.int_anomaly_series_hourly "
                                    "where series like 'error_category:%'")[0][0]
    assert n_categories > 3


def test_dbt_series_window(simulated_warehouses):
    sw = simulated_warehouses
    (start, end, first, last), = sw.query(
        "duckdb", "select min(window_start), max(window_end), min(hour_start), max(hour_start) "
                  "from intermediate.int_anomaly_series_hourly")
    assert utc(end) == sw.as_of and utc(start) == sw.as_of - timedelta(days=HISTORY_DAYS)
    assert utc(first) >= utc(start) and utc(last) < sw.as_of


# ---------------------------------------------------------------------------------------------
# the simulated month on both engines


def test_simulated_month_anomalies(simulated_warehouses, tmp_path):
    """Scored on a copy of the DuckDB warehouse and in the PostgreSQL warehouse (the table is
    dropped again): the same rows, the NULL tweet id bursts of the simulation among them."""
    sw = simulated_warehouses
    copy = Location.parse(str(tmp_path / "warehouse.duckdb"))
    shutil.copy(sw.warehouses["duckdb"].path, copy.path)
    duck = refresh_anomalies(copy, sw.as_of, write_days=30)
    pg_loc = sw.warehouses["postgres"]
    try:
        pg = refresh_anomalies(pg_loc, sw.as_of, write_days=30)
        pg_rows = normalised_rows(sw.query("postgres", f"select {', '.join(COLUMNS)} from {TABLE}"))
    finally:
        with psycopg.connect(pg_loc.dsn, autocommit=True) as conn:
            conn.execute(f"drop table if exists {TABLE}")
    duck_rows = normalised_rows(duckdb.connect(str(copy.path), read_only=True).execute(
        f"select {', '.join(COLUMNS)} from {TABLE}").fetchall())
    assert duck.n_series == pg.n_series > 20
    assert duck_rows == pg_rows and len(duck_rows) == duck.n_anomalies > 0
    assert all(r.is_new and r.detected_at == sw.as_of for r in duck.rows)
    found = {(r.series, r.bucket) for r in duck.rows}
    for incident in sw.incidents_of("null_tweet_id_burst"):
        hour = utc(incident["start"]).replace(minute=0, second=0, microsecond=0)
        if hour >= duck.window_start + timedelta(days=1):  # a day of history before it
            assert ("null_tweet_id", hour) in found, incident
    assert {"volume", "events"} <= {r.series_kind for r in duck.rows}


# ---------------------------------------------------------------------------------------------
# a crafted warehouse: a known spike and a known drop, on both engines

AS_OF = datetime(2026, 3, 10, tzinfo=timezone.utc)
SPIKE_HOUR = AS_OF - timedelta(hours=5)
DROP_HOURS = [AS_OF - timedelta(hours=h) for h in (12, 11, 10, 9)]


def _crafted_rows() -> list[tuple]:
    start = AS_OF - timedelta(days=21)
    rows = []
    for i in range(21 * 24):
        hour = start + timedelta(hours=i)
        n_err = 40 if hour == SPIKE_HOUR else (1 if i % 3 == 0 else 0)
        if n_err:
            rows.append(("errors:probe", "errors", hour, n_err))
        if hour not in DROP_HOURS:
            rows.append(("posting_volume", "volume", hour, 10))
    return rows


def _make_crafted(loc: Location) -> None:
    """The two relations refresh_anomalies reads: the series view (here a table) and the facts
    (only the first event's time is read)."""
    window = (AS_OF - timedelta(days=HISTORY_DAYS), AS_OF)
    ddl = ["create schema if not exists intermediate", "create schema if not exists marts",
           "create table intermediate.int_anomaly_series_hourly (series text, series_kind text, "
           "hour_start timestamptz, n_events bigint, window_start timestamptz, window_end timestamptz)",
           "create table marts.fct_system_events (event_id text, created_at timestamptz, is_deleted boolean)"]
    rows = [(*r, *window) for r in _crafted_rows()]
    first = ("e1", AS_OF - timedelta(days=21), False)
    if loc.is_postgres:
        with psycopg.connect(loc.dsn) as conn:
            for stmt in ddl:
                conn.execute(stmt)
            with conn.cursor() as cur:
                cur.executemany("insert into intermediate.int_anomaly_series_hourly values (%s, %s, %s, %s, %s, %s)",
                                rows)
                cur.execute("insert into marts.fct_system_events values (%s, %s, %s)", first)
    else:
        conn = duckdb.connect(str(loc.path))
        try:
            for stmt in ddl:
                conn.execute(stmt)
            conn.executemany("insert into intermediate.int_anomaly_series_hourly values (?, ?, ?, ?, ?, ?)", rows)
            conn.execute("insert into marts.fct_system_events values (?, ?, ?)", first)
        finally:
            conn.close()


@pytest.fixture(params=["duckdb", "postgres"])
def crafted(request, tmp_path, pg_databases) -> Location:
    loc = (Location.parse(pg_databases.new("wh")) if request.param == "postgres"
           else Location.parse(str(tmp_path / "crafted.duckdb")))
    _make_crafted(loc)
    return loc


def _table(loc: Location) -> list[tuple]:
    sql = f"select {', '.join(COLUMNS)} from {TABLE}"
    if loc.is_postgres:
        with psycopg.connect(loc.dsn) as conn:
            return normalised_rows(conn.execute(sql).fetchall())
    conn = duckdb.connect(str(loc.path), read_only=True)
    try:
        return normalised_rows(conn.execute(sql).fetchall())
    finally:
        conn.close()


def test_crafted_spike_and_drop_idempotent(crafted):
    first = refresh_anomalies(crafted, AS_OF)
    by_key = {(r.series, r.bucket): r for r in first.rows}
    spike = by_key[("errors:probe", SPIKE_HOUR)]
    assert spike.observed == 40 and spike.direction == "rise" and spike.is_new
    assert spike.severity == "critical" and "spike" in spike.rules.split(",")
    assert spike.expected is not None and spike.expected_high is not None and spike.expected_high < 40
    drops = [r for r in first.rows if r.series == "posting_volume"]
    assert drops and all(r.direction == "drop" and r.bucket in DROP_HOURS for r in drops)
    assert first.window_start == AS_OF - timedelta(days=21) and first.window_end == AS_OF
    table = _table(crafted)
    assert len(table) == first.n_anomalies

    # the same as_of again: the same rows, still new (found first by a run at this as_of)
    again = refresh_anomalies(crafted, AS_OF)
    assert again.rows == first.rows
    assert _table(crafted) == table

    # a later run (the view still ends at AS_OF: nothing further is scored): the same anomalies,
    # no longer new, first_detected_at kept
    later = refresh_anomalies(crafted, AS_OF + timedelta(hours=1))
    assert later.window_end == AS_OF and later.notes
    assert [(r.series, r.bucket) for r in later.rows] == [(r.series, r.bucket) for r in first.rows]
    assert not later.new_anomalies
    assert all(r.first_detected_at == AS_OF and r.detected_at == AS_OF + timedelta(hours=1) for r in later.rows)
    assert no_new_anomalies(later.rows).passed and no_new_critical_anomalies(later.rows).passed


def test_older_rows_are_kept(tmp_path):
    loc = Location.parse(str(tmp_path / "crafted.duckdb"))
    _make_crafted(loc)
    refresh_anomalies(loc, AS_OF)
    # an earlier as_of whose write window ends before the spike: the spike row stays
    earlier = refresh_anomalies(loc, AS_OF - timedelta(hours=6), write_days=1)
    assert all(r.bucket < SPIKE_HOUR for r in earlier.rows)
    assert any(row[0] == "errors:probe" and row[2] == SPIKE_HOUR for row in _table(loc))


# ---------------------------------------------------------------------------------------------
# the checks and the Dagster wiring


def _row(severity: str, is_new: bool = True, series: str = "errors:probe") -> AnomalyRow:
    return AnomalyRow(series=series, series_kind="errors", bucket=SPIKE_HOUR, observed=40.0, expected=0.3,
                      expected_low=0.0, expected_high=2.0, score=30.0, rules="spike,errors_per_hour_gt_10",
                      severity=severity, direction="rise", detected_at=AS_OF,
                      first_detected_at=AS_OF if is_new else AS_OF - timedelta(hours=1), is_new=is_new)


def test_check_functions():
    for rows in ([], [_row("critical", is_new=False), _row("warning", is_new=False)]):
        assert no_new_anomalies(rows).passed and no_new_critical_anomalies(rows).passed

    warn = no_new_anomalies([_row("warning", series="errors:warned"), _row("critical", is_new=False)])
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert warn.metadata["new_anomalies"].value == 1 and "errors:warned" in warn.metadata["anomalies"].value
    assert no_new_critical_anomalies([_row("warning")]).passed

    crit = no_new_critical_anomalies([_row("critical", series="errors:crit"), _row("warning")])
    assert not crit.passed and crit.severity == dg.AssetCheckSeverity.ERROR
    table = crit.metadata["anomalies"].value
    assert "errors:crit" in table and "| 40 |" in table and "0.0 – 2.0" in table
    assert crit.metadata["new_anomalies_any_severity"].value == 2
    assert crit.check_name == NO_NEW_CRITICAL_ANOMALIES and crit.asset_key == ASSET_KEY


def test_definitions_wire_the_asset_after_the_series_view():
    from orchestration.defs.transform.dbt_assets import dbt_resource, ops_dbt_models

    defs = dg.Definitions(assets=[ops_dbt_models, *anomaly_assets],
                          resources={"ops_locations": OpsLocations(source_url="s.duckdb", warehouse_url="w.duckdb"),
                                     "dbt": dbt_resource()})
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey(["int_anomaly_series_hourly"]) in graph.materializable_asset_keys
    node = graph.get(ASSET_KEY)
    assert node.group_name == "quality" and node.owners == ["team:ops-warehouse"]
    upstream = set(graph.upstream_key_iterator(ASSET_KEY))
    assert {dg.AssetKey(["int_anomaly_series_hourly"]), dg.AssetKey(["fct_system_events"])} <= upstream
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key == ASSET_KEY}
    assert checks == {NO_NEW_ANOMALIES, NO_NEW_CRITICAL_ANOMALIES}


def test_asset_materializes_with_checks(tmp_path):
    loc = Location.parse(str(tmp_path / "crafted.duckdb"))
    _make_crafted(loc)
    resources = {"ops_locations": OpsLocations(source_url=str(tmp_path / "s.duckdb"), warehouse_url=str(loc.path))}

    def run(as_of: datetime) -> dict[str, dg.AssetCheckEvaluation]:
        result = dg.materialize(anomaly_assets, resources=resources, run_config={
            "ops": {"mart_anomalies": {"config": {"as_of": as_of.isoformat()}}}})
        assert result.success
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    first = run(AS_OF)
    assert not first[NO_NEW_CRITICAL_ANOMALIES].passed
    assert first[NO_NEW_CRITICAL_ANOMALIES].severity == dg.AssetCheckSeverity.ERROR
    assert "errors:probe" in first[NO_NEW_CRITICAL_ANOMALIES].metadata["anomalies"].value
    later = run(AS_OF + timedelta(hours=1))
    assert later[NO_NEW_ANOMALIES].passed and later[NO_NEW_CRITICAL_ANOMALIES].passed
