"""Great Expectations suites (expectations/*.json) and their Dagster asset checks.

Each suite runs through the same code as the check (read the rows with the suite's select from a
small DuckDB warehouse, validate with GX Core): clean tables pass, and each crafted defect fails
naming the expectation, with a sample of the offending rows.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.defs.extract.assets import extract_assets
from orchestration.defs.quality.gx_checks import build_gx_asset_checks, gx_asset_checks
from orchestration.defs.resources import OpsLocations
from orchestration.lib.quality import gx_suites
from orchestration.lib.quality.gx_suites import GxRunner, SuiteError, load_suite, load_suites, run_suite
from orchestration.lib.settings import Location

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
SUITES = {s.name: s for s in load_suites()}


@pytest.fixture(scope="module")
def runner() -> GxRunner:
    return GxRunner(docs_dir=None, results_dir=None)  # one GX context for the module


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def hours_before_now(n: float) -> pd.Timestamp:
    return pd.Timestamp(NOW - dt.timedelta(hours=n))


def make_warehouse(path: Path, tables: dict[str, pd.DataFrame]) -> Location:
    conn = duckdb.connect(str(path))
    conn.execute("set timezone = 'UTC'")
    try:
        for relation, frame in tables.items():
            schema = relation.split(".")[0]
            conn.execute(f"create schema if not exists {schema}")
            conn.register("frame", frame)
            conn.execute(f"create or replace table {relation} as select * from frame")
            conn.unregister("frame")
    finally:
        conn.close()
    return Location.parse(str(path))


# ----------------------------------------------------------------------------- clean tables


def system_events() -> pd.DataFrame:
    n = 6
    return pd.DataFrame({
        "id": [f"e{i}" for i in range(n)],
        "event_type": ["job_started"] * n,
        # raw severities as the bot writes them: all fold into the known set
        "severity": ["info", None, "notice", "HIGH", "deadlock", " Warning "],
        "created_at": [hours_before_now(0.5 + i) for i in range(n)],
        "_loaded_at": [hours_before_now(0.1)] * n,
    })


def job_heartbeats() -> pd.DataFrame:
    return pd.DataFrame({
        "job_name": ["plan", "post", "reply", "scrape", "legacy"],
        "last_run_status": ["success", "running", "failure", "skipped", "failed"],
        "consecutive_failures": [0, 0, 2, 0, 1],
        "last_success": [hours_before_now(1)] * 5,
        "last_failure": [None, None, hours_before_now(0.5), None, hours_before_now(3)],
        "updated_at": [hours_before_now(0.2 + i) for i in range(5)],
        "_loaded_at": [hours_before_now(0.1)] * 5,
    })


def posting_attempts() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a1", "a2", "a3", "a4"],
        "decision_id": ["d1", "d2", "d3", "d4"],
        "job_type": ["post"] * 4,
        "status": ["success", "failed", "Attempting", "post_succeeded_db_write_failed"],
        "created_at": [hours_before_now(1 + i) for i in range(4)],
        "_loaded_at": [hours_before_now(0.1)] * 4,
    })


def decisions() -> pd.DataFrame:
    return pd.DataFrame({
        "decision_id": ["d1", "d2", "d3"],
        "decision_type": ["single", "thread", "reply"],
        "status": ["posted", "queued", "blocked_permanent"],
        "created_at": [hours_before_now(5)] * 3,
        "updated_at": [hours_before_now(1 + i) for i in range(3)],
        "_loaded_at": [hours_before_now(0.1)] * 3,
    })


HOURS = [ts("2026-11-20 00:00") + pd.Timedelta(hours=i) for i in range(6)]


def error_trends() -> pd.DataFrame:
    rows = []
    for i, hour in enumerate(HOURS):
        for dim, val, n in (("total", "all", i), ("family", "db", i // 2), ("severity", "error", i)):
            rows.append({"hour_start": hour, "dimension": dim, "dimension_value": val, "n_errors": n,
                         "n_operations": 4, "n_errors_prev_hour": max(n - 1, 0) if i else None,
                         "n_errors_week_ago": None, "error_rate": n / 4, "baseline_24h": 1.5 if i else None})
    return pd.DataFrame(rows)


def posting_health() -> pd.DataFrame:
    n = len(HOURS)
    counts = {c: [1] * n for c in ("n_created", "n_posted", "n_failed", "n_skipped", "n_blocked", "n_in_flight",
                                   "n_other", "n_attempts", "n_attempts_succeeded", "n_null_tweet_id")}
    return pd.DataFrame({"hour_start": HOURS, **counts, "success_rate": [0.0, 0.5, 1.0, None, 0.25, 1.0],
                         "null_tweet_id_rate": [0.0] * n})


def job_performance() -> pd.DataFrame:
    return pd.DataFrame({
        "job_name": ["plan", "plan", "post"], "period": ["day", "week", "day"],
        "period_start": [ts("2026-11-19"), ts("2026-11-16"), ts("2026-11-19")],
        "runs": [10, 40, 5], "successes": [9, 38, 5], "failures": [1, 2, 0], "skips": [0, 0, 0],
        "unknown_outcomes": [0, 0, 0], "slow_runs": [0, 1, 0], "failure_rate": [0.1, 0.05, 0.0],
    })


def hour_spine() -> pd.DataFrame:
    return pd.DataFrame({"hour_start": HOURS, "hour_end": [h + pd.Timedelta(hours=1) for h in HOURS],
                         "hour_index": list(range(len(HOURS)))})


CLEAN = {
    "raw_system_events": ("raw.system_events", system_events),
    "raw_job_heartbeats": ("raw.job_heartbeats", job_heartbeats),
    "raw_posting_attempts": ("raw.posting_attempts", posting_attempts),
    "raw_decisions": ("raw.content_generation_metadata_comprehensive", decisions),
    "mart_error_trends_hourly": ("marts.mart_error_trends_hourly", error_trends),
    "mart_posting_health_hourly": ("marts.mart_posting_health_hourly", posting_health),
    "mart_job_performance": ("marts.mart_job_performance", job_performance),
    "int_hour_spine": ("intermediate.int_hour_spine", hour_spine),
}


def run(tmp_path: Path, runner: GxRunner, suite: str, frame: pd.DataFrame):
    relation = CLEAN[suite][0]
    location = make_warehouse(tmp_path / f"{suite}.duckdb", {relation: frame})
    return run_suite(location, SUITES[suite], now=NOW, runner=runner)


def test_every_suite_file_is_tested():
    assert set(SUITES) == set(CLEAN)


@pytest.mark.parametrize("suite", sorted(CLEAN))
def test_suite_passes_on_clean_data(tmp_path, runner, suite):
    result = run(tmp_path, runner, suite, CLEAN[suite][1]())
    assert result.error is None
    assert result.passed, result.summary()
    assert result.n_expectations == len(SUITES[suite].expectation_types) == result.n_passed
    assert result.rows_validated == len(CLEAN[suite][1]())


# ----------------------------------------------------------------------------- crafted defects


def _set(frame: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    frame = frame.copy()
    for col, value in values.items():
        frame[col] = frame[col].astype(object)
        frame.at[row, col] = value
        if col in ("created_at", "updated_at", "hour_start", "last_success"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _drop(frame: pd.DataFrame, row: int) -> pd.DataFrame:
    return frame.drop(index=row).reset_index(drop=True)


BAD = [
    # (id, suite, crafted frame, failing expectation, column, a value expected in the sample rows)
    ("events-duplicate-key", "raw_system_events", lambda: _set(system_events(), 3, id="e1"),
     "expect_column_values_to_be_unique", "id", "e1"),
    ("events-null-key", "raw_system_events", lambda: _set(system_events(), 2, id=None),
     "expect_column_values_to_not_be_null", "id", "notice"),
    ("events-unknown-severity", "raw_system_events", lambda: _set(system_events(), 1, severity="bogus"),
     "expect_column_values_to_be_in_set", "severity", "bogus"),
    ("events-2099", "raw_system_events", lambda: _set(system_events(), 4, created_at=ts("2099-01-01")),
     "expect_column_values_to_be_between", "created_at", "e4"),
    ("events-1970", "raw_system_events", lambda: _set(system_events(), 5, created_at=ts("1970-01-01")),
     "expect_column_values_to_be_between", "created_at", "e5"),
    ("events-stale", "raw_system_events",
     lambda: system_events().assign(created_at=lambda f: f.created_at - pd.Timedelta(hours=5)),
     "expect_column_max_to_be_between", "created_at", None),
    ("heartbeats-duplicate-job", "raw_job_heartbeats", lambda: _set(job_heartbeats(), 1, job_name="plan"),
     "expect_column_values_to_be_unique", "job_name", "plan"),
    ("heartbeats-unknown-status", "raw_job_heartbeats",
     lambda: _set(job_heartbeats(), 2, last_run_status="exploded"),
     "expect_column_values_to_be_in_set", "last_run_status", "exploded"),
    ("heartbeats-negative-failures", "raw_job_heartbeats",
     lambda: _set(job_heartbeats(), 0, consecutive_failures=-1),
     "expect_column_values_to_be_between", "consecutive_failures", "plan"),
    ("heartbeats-stale", "raw_job_heartbeats",
     lambda: job_heartbeats().assign(updated_at=lambda f: f.updated_at - pd.Timedelta(hours=3)),
     "expect_column_max_to_be_between", "updated_at", None),
    ("attempts-null-key", "raw_posting_attempts", lambda: _set(posting_attempts(), 1, id=None),
     "expect_column_values_to_not_be_null", "id", "d2"),
    ("attempts-unknown-status", "raw_posting_attempts", lambda: _set(posting_attempts(), 0, status="lost"),
     "expect_column_values_to_be_in_set", "status", "lost"),
    ("decisions-duplicate-key", "raw_decisions", lambda: _set(decisions(), 2, decision_id="d1"),
     "expect_column_values_to_be_unique", "decision_id", "d1"),
    ("trends-negative-count", "mart_error_trends_hourly", lambda: _set(error_trends(), 4, n_errors=-2),
     "expect_column_values_to_be_between", "n_errors", -2),
    ("trends-duplicate-grain", "mart_error_trends_hourly",
     lambda: pd.concat([error_trends(), error_trends().iloc[[0]]], ignore_index=True),
     "expect_compound_columns_to_be_unique", "hour_start, dimension, dimension_value", "total"),
    ("health-rate-1.3", "mart_posting_health_hourly", lambda: _set(posting_health(), 1, success_rate=1.3),
     "expect_column_values_to_be_between", "success_rate", 1.3),
    ("health-negative-count", "mart_posting_health_hourly", lambda: _set(posting_health(), 0, n_failed=-1),
     "expect_column_values_to_be_between", "n_failed", -1),
    ("health-missing-hour", "mart_posting_health_hourly", lambda: _drop(posting_health(), 3),
     "expect_column_values_to_be_between", "hours_since_previous", 2.0),
    ("jobs-rate-1.3", "mart_job_performance", lambda: _set(job_performance(), 0, failure_rate=1.3),
     "expect_column_values_to_be_between", "failure_rate", 1.3),
    ("spine-missing-hour", "int_hour_spine",
     lambda: _drop(hour_spine(), 2).assign(hour_index=lambda f: range(len(f))),
     "expect_column_values_to_be_between", "hours_since_previous", 2.0),
    ("spine-duplicate-hour", "int_hour_spine", lambda: pd.concat([hour_spine(), hour_spine().iloc[[1]]]),
     "expect_column_values_to_be_unique", "hour_start", None),
]


@pytest.mark.parametrize(("suite", "make_frame", "expectation", "column", "sample"),
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_suite_fails_on_crafted_defect(tmp_path, runner, suite, make_frame, expectation, column, sample):
    result = run(tmp_path, runner, suite, make_frame())
    assert result.error is None
    assert not result.passed
    failure = result.failure(expectation, column)
    assert failure is not None, result.summary()
    if expectation == "expect_column_max_to_be_between":  # an aggregate: the observed newest time
        assert failure.observed_value is not None and failure.observed_value < NOW.isoformat()
        return
    assert failure.unexpected_count and failure.unexpected_count >= 1
    assert failure.sample_rows, result.summary()
    if sample is not None:
        assert any(sample in row.values() for row in failure.sample_rows), failure.sample_rows


# ----------------------------------------------------------------------------- suite files


def test_suites_are_gx_suites_with_our_meta(runner):
    for spec in SUITES.values():
        suite = gx_suites.build_gx_suite(spec)
        assert suite.name == spec.name and len(suite.expectations) == len(spec.expectation_types)
        assert spec.relation and spec.rows and "select" in spec.select_sql().lower()
    sql = SUITES["raw_system_events"].select_sql()
    assert "when 'deadlock' then 'error'" in sql and "{{" not in sql  # the dbt macro, rendered


def test_invalid_json_names_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"name": "broken", "expectations": [')
    with pytest.raises(SuiteError, match="broken.json"):
        load_suite(bad)
    with pytest.raises(SuiteError, match="broken.json"):
        load_suites(tmp_path)


def test_unknown_expectation_names_the_file(tmp_path):
    data = json.loads(SUITES["raw_job_heartbeats"].path.read_text())
    data["expectations"].append({"type": "expect_column_values_to_be_purple", "kwargs": {"column": "job_name"}})
    path = tmp_path / "purple.json"
    path.write_text(json.dumps(data))
    spec = load_suite(path)
    with pytest.raises(SuiteError, match=r"purple\.json: expectation #\d+ \(expect_column_values_to_be_purple\)"):
        gx_suites.build_gx_suite(spec)


def test_missing_relation_is_a_failed_result(tmp_path, runner):
    location = make_warehouse(tmp_path / "empty.duckdb", {})
    result = run_suite(location, SUITES["raw_system_events"], now=NOW, runner=runner)
    assert not result.passed and result.error and "system_events" in result.error


# ----------------------------------------------------------------------------- odd values, failing expectations

# raw.system_events as the bot could leave it, written with SQL so that both engines store real
# timestamptz infinities: 4 good rows, infinity and -infinity, a duplicated id (e1), a 1969 and a
# year-9999 created_at, NULL severities and odd text
ODD_EVENTS_SQL = """
create schema raw;
create table raw.system_events (id varchar, event_type varchar, severity varchar, created_at timestamptz,
                                _loaded_at timestamptz);
insert into raw.system_events values
    ('e0', 'job_started', 'info', '2026-11-20 12:00:00+00', '2026-11-20 12:25:00+00'),
    ('e1', 'job_started', null, '2026-11-20 11:00:00+00', '2026-11-20 12:25:00+00'),
    ('e2', 'rocket 🚀 | pipe
newline', ' Warning ', '2026-11-20 10:00:00+00', '2026-11-20 12:25:00+00'),
    ('e3', '', 'deadlock', '2026-11-20 09:00:00+00', '2026-11-20 12:25:00+00'),
    ('e4', 'job_started', 'info', 'infinity', '2026-11-20 12:25:00+00'),
    ('e5', 'job_started', 'info', '-infinity', '2026-11-20 12:25:00+00'),
    ('e1', 'job_started', 'notice', '2026-11-20 08:00:00+00', '2026-11-20 12:25:00+00'),
    ('e7', 'job_started', null, '1969-07-20 20:17:00+00', '2026-11-20 12:25:00+00'),
    ('e8', 'job_started', 'HIGH', '9999-12-31 23:00:00+00', '2026-11-20 12:25:00+00');
"""


class SqlWarehouse:
    """Makes a warehouse of one kind from SQL statements: a DuckDB file or a PostgreSQL database
    (created and dropped by the ``pg_databases`` fixture)."""

    def __init__(self, kind: str, tmp_path: Path, pg_databases) -> None:
        self.kind, self.tmp_path, self.pg_databases = kind, tmp_path, pg_databases

    def __call__(self, sql: str) -> Location:
        if self.kind == "duckdb":
            path = self.tmp_path / "warehouse.duckdb"
            with duckdb.connect(str(path)) as conn:
                conn.execute("set timezone = 'UTC'")
                conn.execute(sql)
            return Location.parse(str(path))
        import psycopg

        dsn = self.pg_databases.new("wh")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("set timezone = 'UTC'")
            conn.execute(sql)
        return Location.parse(dsn)


@pytest.fixture(params=["duckdb", "postgres"])
def sql_warehouse(request, tmp_path, pg_databases) -> SqlWarehouse:
    return SqlWarehouse(request.param, tmp_path, pg_databases)


def suite_with(tmp_path: Path, base: str, name: str, extra: list[dict]):
    """A copy of a suite file with more expectations (appended), under another name."""
    data = json.loads(SUITES[base].path.read_text())
    data["name"] = name
    data["expectations"] += extra
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return load_suite(path)


def test_infinite_timestamps_fail_their_expectations_and_hide_nothing(sql_warehouse, runner):
    """infinity/-infinity in created_at: the read does not crash (psycopg cannot make datetimes of
    them, DuckDB's reach pandas as year 294247); the created_at expectations fail naming them,
    with the rows; the duplicated id is still found; the other expectations pass."""
    spec = SUITES["raw_system_events"]
    result = run_suite(sql_warehouse(ODD_EVENTS_SQL), spec, now=NOW, runner=runner)
    assert result.error is None, result.error
    assert result.rows_validated == 9
    assert (result.n_expectations, result.n_passed, result.n_failed) == (8, 4, 4), result.summary()
    assert sorted(f"{f.type}({f.column})" for f in result.failures) == [
        "expect_column_max_to_be_between(created_at)", "expect_column_values_to_be_between(created_at)",
        "expect_column_values_to_be_unique(id)", "expect_column_values_to_not_be_null(created_at)"]
    reason = "created_at: 2 rows hold timestamps pandas cannot represent (infinity, -infinity)"
    assert result.unrepresentable == {"created_at": reason}

    between = result.failure("expect_column_values_to_be_between", "created_at")
    assert between.reason == reason and between.exception is None
    assert between.unexpected_count == 4  # infinity, -infinity, 1969, 9999
    assert between.sample_values[:2] == ["infinity", "-infinity"]
    assert "1969-07-20T20:17:00+00:00" in between.sample_values
    assert [(r["id"], r["created_at"]) for r in between.sample_rows[:2]] == [("e4", "infinity"), ("e5", "-infinity")]
    assert {r["id"] for r in between.sample_rows} == {"e4", "e5", "e7", "e8"}

    not_null = result.failure("expect_column_values_to_not_be_null", "created_at")
    assert not_null.reason == reason and not_null.unexpected_count == 2  # read as NULL: counted once
    assert not_null.sample_values == ["infinity", "-infinity"]
    freshness = result.failure("expect_column_max_to_be_between", "created_at")
    assert freshness.reason == reason  # GX alone passes it: the newest readable time is year 9999
    assert freshness.observed_value.startswith("9999-12-31T23:00:00")

    unique = result.failure("expect_column_values_to_be_unique", "id")
    assert unique.reason is None and unique.exception is None and unique.unexpected_count == 2
    assert {r["id"] for r in unique.sample_rows} == {"e1"}
    for expectation in ("expect_table_row_count_to_be_between", "expect_column_values_to_be_in_set"):
        assert result.failure(expectation) is None  # evaluated and passed (odd text, NULL severities)

    from orchestration.defs.quality.gx_checks import check_metadata

    meta = check_metadata(spec, result, None)
    assert meta["expectations_failed"].value == 4 and meta["expectations_passed"].value == 4
    assert meta["unrepresentable_values"].value == {"created_at": reason}
    assert "2 rows hold timestamps pandas cannot represent (infinity, -infinity)" in meta["failing_expectations"].value
    assert meta["sample_failing_rows"].value["expect_column_values_to_be_between(created_at)"][0]["created_at"] \
        == "infinity"


def write_suite(tmp_path: Path, name: str, relation: str, select: str, expectations: list[dict],
                parameters: dict | None = None):
    data = {"name": name, "expectations": expectations, "meta": {"ops_warehouse": {
        "relation": relation, "select": select, "rows": "all", "parameters": parameters or {}}}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return load_suite(path)


def test_dates_and_timestamps_beyond_python_years_are_read(tmp_path, sql_warehouse, runner):
    """Infinite, BC and year-10000 values next to NULLs, 1900 and year 9999, in date and timestamptz
    columns: the read keeps every row; the expectations on the two odd columns fail naming their
    values, the ones on ordinary columns report as usual (1969 read exactly)."""
    bc = "0044-03-15 BC" if sql_warehouse.kind == "postgres" else "0044-03-15 (BC)"
    location = sql_warehouse(f"""
        create schema raw;
        create table raw.odd_times (id varchar, d date, ts timestamptz, early timestamptz);
        insert into raw.odd_times values
            ('a', 'infinity', '10000-01-01 00:00:00+00', '1900-01-01 00:00:00+00'),
            ('b', '1900-01-01', '9999-12-31 23:00:00+00', '1969-07-20 20:17:00+00'),
            ('c', null, null, null),
            ('d', '{bc}', '-infinity', '1950-01-01 00:00:00+00');""")
    expectations = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 4, "max_value": 4}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "d"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "ts"}},
        {"type": "expect_column_max_to_be_between",
         "kwargs": {"column": "early", "min_value": {"$PARAMETER": "epoch"}}},
    ]
    spec = write_suite(tmp_path, "odd_times", "raw.odd_times", "select id, d, ts, early from raw.odd_times order by id",
                       expectations, parameters={"epoch": {"at": "1970-01-01T00:00:00Z"}})
    result = run_suite(location, spec, now=NOW, runner=runner)
    assert result.error is None, result.error
    assert (result.rows_validated, result.n_expectations, result.n_passed) == (4, 5, 2), result.summary()
    assert set(result.unrepresentable) == {"d", "ts"}

    dates = result.failure("expect_column_values_to_not_be_null", "d")
    assert dates.reason == f"d: 2 rows hold dates pandas cannot represent (infinity, {bc})"
    assert dates.unexpected_count == 3  # the two odd dates and the NULL
    assert [(r["id"], r["d"]) for r in dates.sample_rows[:2]] == [("a", "infinity"), ("d", bc)]
    times = result.failure("expect_column_values_to_be_unique", "ts")
    assert times.reason == "ts: 2 rows hold timestamps pandas cannot represent (10000-01-01 00:00:00+00, -infinity)"
    assert times.unexpected_count == 2
    early = result.failure("expect_column_max_to_be_between", "early")
    assert early.reason is None and early.observed_value == "1969-07-20T20:17:00+00:00"


def test_an_expectation_that_cannot_be_evaluated_fails_alone(tmp_path, sql_warehouse, runner):
    """A column missing from the relation (GX catches it per expectation) and an undefined
    $PARAMETER (GX stops the whole suite run: the expectations then run one by one): each of those
    fails with its error text; the other expectations are still evaluated (a duplicated id fails)."""
    location = sql_warehouse(ODD_EVENTS_SQL.split("    ('e4'")[0] + """
        ('e1', 'job_started', 'notice', '2026-11-20 08:00:00+00', '2026-11-20 12:25:00+00');""")
    spec = suite_with(tmp_path, "raw_system_events", "events_broken", [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "no_such_column"}},
        {"type": "expect_column_min_to_be_between",
         "kwargs": {"column": "created_at", "max_value": {"$PARAMETER": "undefined_limit"}}},
    ])
    result = run_suite(location, spec, now=NOW, runner=runner)
    assert result.error is None, result.error
    assert (result.rows_validated, result.n_expectations, result.n_passed) == (5, 10, 7), result.summary()
    missing = result.failure("expect_column_values_to_not_be_null", "no_such_column")
    assert missing.exception and "no_such_column" in missing.exception and missing.unexpected_count is None
    unparameterised = result.failure("expect_column_min_to_be_between", "created_at")
    assert unparameterised.exception and "undefined_limit" in unparameterised.exception
    unique = result.failure("expect_column_values_to_be_unique", "id")
    assert unique.exception is None and unique.unexpected_count == 2
    assert result.failed_types() == ["expect_column_values_to_be_unique", "expect_column_values_to_not_be_null",
                                     "expect_column_min_to_be_between"]  # the suite's order

    from orchestration.defs.quality.gx_checks import check_metadata

    meta = check_metadata(spec, result, None)
    assert set(meta["expectation_errors"].value) == {"expect_column_values_to_not_be_null(no_such_column)",
                                                     "expect_column_min_to_be_between(created_at)"}
    assert "error: " in meta["failing_expectations"].value and meta["expectations_failed"].value == 3


def test_unreadable_rows_are_a_failed_result(tmp_path, sql_warehouse, runner):
    """A missing relation or an SQL error in the select: a failed result naming it, no exception."""
    location = sql_warehouse("create schema raw; create table raw.odd_times (id varchar);")
    missing = run_suite(location, SUITES["raw_system_events"], now=NOW, runner=runner)
    assert not missing.passed and "system_events" in missing.error and missing.n_expectations == 0
    spec = write_suite(tmp_path, "bad_select", "raw.odd_times", "select id, no_such_column from raw.odd_times",
                       [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}])
    bad = run_suite(location, spec, now=NOW, runner=runner)
    assert not bad.passed and "no_such_column" in bad.error


def test_validate_frame_with_infinity_read_by_pandas(runner):
    """A frame DuckDB gave pandas as is (infinity -> year 294247): validated as given, the infinite
    times are reported, not taken as the newest event."""
    conn = duckdb.connect()
    conn.execute("set timezone = 'UTC'")
    frame = conn.execute("""
        select 'e' || range as id, 'job_started' as event_type, 'info' as severity_raw, 'info' as severity,
               case range when 0 then 'infinity'::timestamptz
                          else timestamptz '2026-11-20 09:00:00+00' + to_minutes(range) end as created_at,
               timestamptz '2026-11-20 12:25:00+00' as _loaded_at
        from range(4)""").df()
    conn.close()
    assert frame.created_at.iloc[0].year == 294247
    result = gx_suites.validate_frame(SUITES["raw_system_events"], frame, now=NOW, runner=runner)
    freshness = result.failure("expect_column_max_to_be_between", "created_at")
    assert freshness.reason == "created_at: 1 row holds timestamps pandas cannot represent (infinity)"
    assert freshness.observed_value == "2026-11-20T09:03:00+00:00"  # the 3-h-old newest real time
    assert result.n_failed == 3 and result.n_passed == 5


# ----------------------------------------------------------------------------- Dagster


def test_checks_are_attached_to_existing_assets():
    from orchestration.definitions import defs

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    attached = {key.asset_key: key.name for c in gx_asset_checks for key in c.check_keys}
    assert len(attached) == len(SUITES)
    assert set(attached) <= set(keys)
    assert attached[dg.AssetKey(["raw", "system_events"])] == "gx_raw_system_events"
    assert attached[dg.AssetKey(["mart_error_trends_hourly"])] == "gx_mart_error_trends_hourly"


def test_dagster_checks_on_a_simulated_warehouse(tmp_path):
    """A day of the bot simulated and extracted; the raw suites run as Dagster asset checks
    (pass), then a duplicated event makes the system_events check fail with readable metadata."""
    from orchestration.lib.extract.engine import extract_all
    from orchestration.lib.simulator import simulate

    end = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    source, warehouse = Location.parse(str(tmp_path / "source.duckdb")), Location.parse(str(tmp_path / "wh.duckdb"))
    simulate(source, days=1, seed=1, end=end, truth_path=tmp_path / "truth.json")
    extract_all(source, warehouse)

    raw_specs = [s for s in SUITES.values() if s.relation.startswith("raw.")]
    checks = build_gx_asset_checks(raw_specs, clock=lambda: end + dt.timedelta(minutes=30),
                                   docs_dir=tmp_path / "docs", results_dir=tmp_path / "results")
    defs = dg.Definitions(
        assets=extract_assets, asset_checks=checks,
        jobs=[dg.define_asset_job("gx", selection=dg.AssetSelection.checks(*checks))],
        resources={"ops_locations": OpsLocations(source_url=str(source.path), warehouse_url=str(warehouse.path))},
        executor=dg.in_process_executor,
    )

    def evaluations():
        result = defs.resolve_job_def("gx").execute_in_process(instance=dg.DagsterInstance.ephemeral())
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    first = evaluations()
    assert set(first) == {s.check_name for s in raw_specs}
    assert all(e.passed for e in first.values()), {
        n: e.metadata["failing_expectations"].value for n, e in first.items() if not e.passed}
    meta = first["gx_raw_system_events"].metadata
    assert meta["rows_validated"].value > 1000
    assert meta["relation"].value == "raw.system_events"
    assert "_loaded_at" in meta["select_sql"].value
    assert (tmp_path / "docs" / "index.html").exists() and meta["data_docs"].value.endswith("index.html")
    assert list((tmp_path / "docs" / "validations" / "raw_system_events").rglob("*.html"))
    assert list((tmp_path / "results" / "raw_system_events").rglob("*.json"))

    conn = duckdb.connect(str(warehouse.path))
    conn.execute("insert into raw.system_events select * from raw.system_events "
                 "where id = (select max(id) from raw.system_events)")
    conn.close()
    failed = evaluations()["gx_raw_system_events"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
    assert "expect_column_values_to_be_unique" in failed.metadata["failing_expectations"].value
    assert failed.metadata["sample_failing_rows"].value["expect_column_values_to_be_unique(id)"]
    assert failed.metadata["expectations_failed"].value == 1


def test_validate_frame_directly(runner):
    """The validation alone, on a DataFrame shaped like the select's output."""
    spec = SUITES["int_hour_spine"]
    frame = pd.DataFrame({"hour_start": HOURS[:3], "hour_end": HOURS[1:4], "hour_index": [0, 1, 2],
                          "hours_since_previous": [None, 1.0, 3.0], "hour_length": [1.0, 1.0, 1.0],
                          "index_offset": [0, 0, 0]})
    result = gx_suites.validate_frame(spec, frame, now=NOW, runner=runner)
    failure = result.failure("expect_column_values_to_be_between", "hours_since_previous")
    assert not result.passed and failure and failure.sample_rows[0]["hours_since_previous"] == 3.0
    assert result.failed_types() == ["expect_column_values_to_be_between"]


def test_prune_keeps_the_newest_results(tmp_path):
    for i in range(5):
        (tmp_path / "suite_a" / "__none__" / f"20261101T0{i}0000.000000Z").mkdir(parents=True)
    gx_suites.prune_results(tmp_path, keep=2)
    kept = sorted(p.name for p in (tmp_path / "suite_a" / "__none__").iterdir())
    assert kept == ["20261101T030000.000000Z", "20261101T040000.000000Z"]
