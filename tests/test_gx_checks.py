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

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.timezone.utc)
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

    end = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
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
