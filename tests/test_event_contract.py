"""The event payload contract (issue 5, part 2): mart_event_contract_violations counts crafted
violations exactly, on DuckDB and PostgreSQL; the contract check fails on bad rows and passes on
clean ones; the Dagster asset check reports the writers without context.

A small crafted set of system_events rows goes into a DuckDB source, is extracted (extract_all)
into a DuckDB and a PostgreSQL warehouse, and only ``+mart_event_contract_violations`` is built
(seed, staging, fct_system_events, the mart, with their dbt tests) with as_of pinned.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dbquery import query_location

from orchestration.defs.quality.contract_checks import (
    CONTRACT_ASSET_KEY,
    contract_asset_checks,
    contract_check_result,
)
from orchestration.lib.build import dbt_build_args, run_dbt
from orchestration.lib.extract.engine import extract_all
from orchestration.lib.quality.contract import (
    ContractThresholds,
    check_contract,
    evaluate_contract,
    read_contract_mart,
)
from orchestration.lib.settings import Location
from orchestration.lib.source.schema import create_source_schema

AS_OF = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
T = AS_OF - dt.timedelta(days=2)
TARGETS = ("duckdb", "postgres")

_J = json.dumps


def _crafted_events() -> list[tuple]:
    """(event_type, payload JSON, payload column, timestamp column NULL?, created_at) per row."""
    rows: list[tuple] = []

    def add(event_type, payload, *, column="event_data", null_ts=False, at=T, n=1):
        for _ in range(n):
            rows.append((event_type, None if payload is None else _J(payload), column, null_ts, at))

    # post lifecycle: POST_FAILED by the event_data writer: 2 compliant, 3 without decision_id,
    # 1 without error_code, 1 without the timestamp column -> 7 events
    add("POST_FAILED", {"decision_id": "d1", "error_code": "PLAYWRIGHT_TIMEOUT", "error_message": "Timeout 30000ms"}, n=2)
    add("POST_FAILED", {"error_code": "RATE_LIMITED_429", "error_message": "HTTP 429"}, n=3)
    add("POST_FAILED", {"decision_id": "d2", "error_message": "composer not found"})
    add("POST_FAILED", {"decision_id": "d3", "error_code": "AUTH_REQUIRED", "error": "session expired"}, null_ts=True)
    # an older writer with its payload under metadata: 1 compliant, 1 with a blank decision_id
    add("POST_FAILED", {"decision_id": "d4", "error_code": "AuthError", "error": "x"}, column="metadata")
    add("POST_FAILED", {"decision_id": "  ", "error_code": "AuthError", "error": "y"}, column="metadata")
    # outside the window (before it and after as_of): never counted
    add("POST_FAILED", {"error_message": "old"}, at=AS_OF - dt.timedelta(days=8))
    add("POST_FAILED", {"error_message": "future"}, at=AS_OF + dt.timedelta(hours=1))
    # REPLY_FAILED without any payload: every required field missing
    add("REPLY_FAILED", None, column=None)

    # job health: the <job>_ prefix names the job even without payload job_name (compliant);
    # a bare job_execution_failed without job_name is the violation (2); with job_name it is fine
    add("posting_job_execution_failed", {"phase": "db_query", "error": "Query read timeout"})
    add("job_execution_failed", {"phase": "process", "error": "TypeError: x"}, n=2)
    add("job_execution_failed", {"job_name": "plan", "error": "OpenAI 503"})
    add("reply_posting_job_execution_failed", {"job_name": "reply_posting", "phase": "fetch"})  # no error text

    # error tracker: compliant browser errors; database errors without component; a
    # content_generator error without error_type; a spike alert without error_type (judged by its
    # own exact rule, not as an error_<type> event)
    add("error_navigation_timeout", {"component": "browser", "error_type": "navigation_timeout",
                                     "error_message": "page.goto: Timeout", "context": {"decision_id": None}}, n=2)
    add("error_database_save_failed", {"error_type": "database_save_failed", "error_message": "statement timeout"}, n=2)
    add("error_json_parse", {"component": "content_generator", "error_message": "Unexpected token"})
    add("error_spike_alert", {"count_last_hour": 12, "threshold": 10})

    # queue gates: 3 with a reason, 1 without, 1 blank
    add("POSTING_QUEUE_BLOCKED", {"reason": "CIRCUIT_BREAKER", "ready_count": 3}, n=3)
    add("POSTING_QUEUE_BLOCKED", {"ready_count": 0})
    add("POSTING_QUEUE_BLOCKED", {"reason": "", "ready_count": 1})

    # no contract rule: not in the mart
    add("timer_fired", {"fired_at": "x"}, n=2)
    return rows


# (family, writer, payload_column, rule_id, required_field) -> (n_events, n_violations)
EXPECTED = {
    **{("post lifecycle", "event_type:POST_FAILED", "event_data", "post_failed", f): v for f, v in {
        "decision_id": (7, 3), "error_code": (7, 1), "error_text": (7, 0), "event_timestamp": (7, 1)}.items()},
    **{("post lifecycle", "event_type:POST_FAILED", "metadata", "post_failed", f): v for f, v in {
        "decision_id": (2, 1), "error_code": (2, 0), "error_text": (2, 0), "event_timestamp": (2, 0)}.items()},
    **{("post lifecycle", "event_type:REPLY_FAILED", "none", "reply_failed", f): (1, 1)
       for f in ("decision_id", "error_code", "error_text")},
    **{("job health", "job:posting", "event_data", "job_execution_failed", f): (1, 0)
       for f in ("job_name", "error_text", "event_timestamp")},
    **{("job health", "event_type:job_execution_failed", "event_data", "job_execution_failed", f): v for f, v in {
        "job_name": (2, 2), "error_text": (2, 0), "event_timestamp": (2, 0)}.items()},
    **{("job health", "job:plan", "event_data", "job_execution_failed", f): (1, 0)
       for f in ("job_name", "error_text", "event_timestamp")},
    **{("job health", "job:reply_posting", "event_data", "job_execution_failed", f): v for f, v in {
        "job_name": (1, 0), "error_text": (1, 1), "event_timestamp": (1, 0)}.items()},
    **{("error tracker", "component:browser", "event_data", "error_tracker", f): (2, 0)
       for f in ("error_type", "error_text", "component", "event_timestamp")},
    **{("error tracker", "event_type:error_database_save_failed", "event_data", "error_tracker", f): v
       for f, v in {"error_type": (2, 0), "error_text": (2, 0), "component": (2, 2), "event_timestamp": (2, 0)}.items()},
    **{("error tracker", "component:content_generator", "event_data", "error_tracker", f): v for f, v in {
        "error_type": (1, 1), "error_text": (1, 0), "component": (1, 0), "event_timestamp": (1, 0)}.items()},
    ("error tracker", "event_type:error_spike_alert", "event_data", "error_spike_alert", "error_type"): (1, 1),
    ("queue gates", "event_type:POSTING_QUEUE_BLOCKED", "event_data", "posting_queue_blocked", "reason"): (5, 2),
}
TOTAL_VIOLATIONS = sum(v for _, v in EXPECTED.values())  # 3+1+1 +1 +3 +2 +1 +2 +1 +1 +2 = 18


def _write_source(path) -> Location:
    source = Location.parse(str(path))
    create_source_schema(source)
    conn = duckdb.connect(str(path))
    try:
        for event_type, payload, column, null_ts, at in _crafted_events():
            conn.execute(
                'insert into system_events (id, event_type, event_data, metadata, severity, "timestamp", created_at) '
                "values (?, ?, ?, ?, 'error', ?, ?)",
                [str(uuid.uuid4()), event_type, payload if column == "event_data" else None,
                 payload if column == "metadata" else None, None if null_ts else at, at],
            )
    finally:
        conn.close()
    return source


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, module_pg_databases) -> dict[str, Location]:
    tmp = tmp_path_factory.mktemp("contract")
    source = _write_source(tmp / "source.duckdb")
    warehouses = {"duckdb": Location.parse(str(tmp / "warehouse.duckdb")),
                  "postgres": Location.parse(module_pg_databases.new("wh"))}
    for kind, warehouse in warehouses.items():
        extract_all(source, warehouse)
        run_dbt(warehouse, dbt_build_args(AS_OF.isoformat(), select="+mart_event_contract_violations"),
                target_path=tmp / f"target_{kind}")
    return warehouses


def _by_key(rows) -> dict[tuple, tuple[int, int]]:
    return {(r["family"], r["writer"], r["payload_column"], r["rule_id"], r["required_field"]):
            (int(r["n_events"]), int(r["n_violations"])) for r in rows}


# ---------------------------------------------------------------------------------------------
# the mart


@pytest.mark.parametrize("kind", TARGETS)
def test_mart_counts_crafted_violations_exactly(crafted, kind):
    rows = read_contract_mart(crafted[kind])
    assert _by_key(rows) == EXPECTED
    assert sum(int(r["n_violations"]) for r in rows) == TOTAL_VIOLATIONS == 18
    for r in rows:
        assert r["violation_rate"] == pytest.approx(int(r["n_violations"]) / int(r["n_events"]))
        if int(r["n_violations"]):
            assert r["example_event_id"] and r["first_violation_at"] is not None
        else:
            assert r["example_event_id"] is None and r["first_violation_at"] is None
    # the window ends at as_of and spans 7 days
    ends = {(r["window_start"], r["window_end"]) for r in rows}
    assert len(ends) == 1
    start, end = ends.pop()
    assert end == AS_OF and end - start == dt.timedelta(days=7)


@pytest.mark.parametrize("kind", TARGETS)
def test_example_event_is_a_real_violating_event(crafted, kind):
    rows = {(r["writer"], r["required_field"]): r for r in read_contract_mart(crafted[kind])}
    spike = rows[("event_type:error_spike_alert", "error_type")]
    assert spike["example_event_type"] == "error_spike_alert" and spike["rule_id"] == "error_spike_alert"
    fct = query_location(crafted[kind], "select event_type, error_type from marts.fct_system_events "
                                        f"where event_id = '{spike['example_event_id']}'")
    assert fct == [("error_spike_alert", None)]


# ---------------------------------------------------------------------------------------------
# the check function


def test_check_fails_on_the_crafted_mart_and_names_the_worst_writer(crafted):
    result = check_contract(crafted["duckdb"])
    assert not result.passed
    assert result.n_violations == 18
    assert len(result.failing) == len(result.violations) == sum(1 for _, v in EXPECTED.values() if v)
    assert result.worst_writers[0] == ("event_type:POST_FAILED", 5)
    assert result.per_family["queue gates"] == {"field_checks": 5, "violations": 2, "rows_violated": 1, "events": 5}
    assert result.per_family["post lifecycle"]["events"] == 7 + 2 + 1
    assert result.n_events == 7 + 2 + 1 + 1 + 2 + 1 + 1 + 2 + 2 + 1 + 1 + 5
    assert "FAILED" in result.summary and "event_type:POST_FAILED" in result.summary
    table = result.markdown_table()
    assert "| post lifecycle | `event_type:POST_FAILED` | event_data | `decision_id` | 3 / 7 |" in table


def test_thresholds_decide_which_rows_fail(crafted):
    rows = read_contract_mart(crafted["postgres"])
    lenient = evaluate_contract(rows, ContractThresholds(max_violation_rate=0.5))
    # rates above 0.5: REPLY_FAILED (1/1 x3), bare job failures (2/2), reply_posting error text (1/1),
    # database errors' component (2/2), content_generator error_type (1/1), spike alert (1/1)
    assert not lenient.passed
    assert sorted((v.writer, v.required_field) for v in lenient.failing) == sorted([
        ("event_type:REPLY_FAILED", "decision_id"), ("event_type:REPLY_FAILED", "error_code"),
        ("event_type:REPLY_FAILED", "error_text"), ("event_type:job_execution_failed", "job_name"),
        ("job:reply_posting", "error_text"), ("event_type:error_database_save_failed", "component"),
        ("component:content_generator", "error_type"), ("event_type:error_spike_alert", "error_type"),
    ])
    assert evaluate_contract(rows, ContractThresholds(max_violation_rate=1.0)).passed
    assert evaluate_contract(rows, ContractThresholds(max_violations=3)).passed
    small = evaluate_contract(rows, ContractThresholds(min_events=3, warn_violation_rate=0.2))
    assert sorted((v.writer, v.required_field) for v in small.failing) == [
        ("event_type:POSTING_QUEUE_BLOCKED", "reason"), ("event_type:POST_FAILED", "decision_id"),
        ("event_type:POST_FAILED", "error_code"), ("event_type:POST_FAILED", "event_timestamp")]
    assert small.warnings == []
    warn = evaluate_contract(rows, ContractThresholds(max_violation_rate=0.4, warn_violation_rate=0.1))
    assert ("event_type:POST_FAILED", "error_code") in [(v.writer, v.required_field) for v in warn.warnings]


def test_check_passes_on_clean_rows_and_fails_on_one_bad_row():
    clean = pd.DataFrame([
        {"family": "post lifecycle", "writer": "event_type:POST_FAILED", "payload_column": "event_data",
         "rule_id": "post_failed", "required_field": f, "n_events": 40, "n_violations": 0,
         "violation_rate": 0.0, "example_event_id": None, "example_event_type": None}
        for f in ("decision_id", "error_code", "error_text")
    ] + [
        {"family": "job health", "writer": "job:posting", "payload_column": "event_data",
         "rule_id": "job_execution_failed", "required_field": "job_name", "n_events": 12,
         "n_violations": 0, "violation_rate": 0.0, "example_event_id": None, "example_event_type": None},
    ])
    ok = evaluate_contract(clean)
    assert ok.passed and ok.n_violations == 0 and ok.n_events == 52 and not ok.violations
    assert "passed" in ok.summary
    assert "No writer" in ok.markdown_table()

    bad = clean.copy()
    bad.loc[3, ["n_violations", "violation_rate", "example_event_id", "example_event_type"]] = \
        [1, 1 / 12, "e-1", "job_execution_failed"]
    result = evaluate_contract(bad)
    assert not result.passed
    assert [(v.writer, v.required_field, v.n_violations) for v in result.failing] == [("job:posting", "job_name", 1)]
    assert evaluate_contract([]).passed
    with pytest.raises(ValueError):
        evaluate_contract([{**clean.iloc[0].to_dict(), "n_violations": 41}])


# ---------------------------------------------------------------------------------------------
# the Dagster asset check


def test_asset_check_result_warns_with_a_readable_table(crafted):
    result = contract_check_result(check_contract(crafted["duckdb"]))
    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.asset_key == CONTRACT_ASSET_KEY == dg.AssetKey(["mart_event_contract_violations"])
    meta = result.metadata
    assert meta["missing_fields"].value == 18
    table = meta["writers_without_context"].value
    assert "event_type:error_database_save_failed" in table and "`component`" in table
    assert meta["per_family"].value["job health"]["violations"] == 3

    clean = contract_check_result(evaluate_contract([]))
    assert clean.passed is True and clean.metadata["missing_fields"].value == 0


def test_asset_check_is_on_the_mart_asset():
    (check,) = contract_asset_checks
    (spec,) = check.check_specs
    assert spec.asset_key == CONTRACT_ASSET_KEY and spec.name == "event_payload_contract"
