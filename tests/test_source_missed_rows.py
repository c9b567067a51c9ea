"""Nothing the cursor misses is lost: an event with a NULL time goes to quarantine in every mode
(once); an event back-dated beyond the overlap is caught by the hot window's per-day reconcile in
the same hourly run, or — older than the hot window — by the full reconcile (a targeted re-read,
recorded in the result and in raw._reconcile_log); the reconcile check fails only when a day still
differs after its re-read.

A PostgreSQL source into both warehouses; raw equals the source after each run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from source_fidelity import assert_raw_equals_source, new_locations, run_sql

from orchestration.defs.extract.assets import quarantine_check, reconcile_check
from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.extract.source import SourceRelation
from orchestration.lib.settings import Location
from orchestration.lib.source.schema import create_source_schema

NOW = datetime.now(timezone.utc)


@pytest.fixture(params=["duckdb", "postgres"])
def locations(request, pg_databases, tmp_path):
    source, warehouse = new_locations(request.param, pg_databases, tmp_path)
    run_sql(source, "insert into system_events (event_type, severity, message, created_at) "
                    "select 'tick', 'info', 'tick ' || i, now() - i * interval '10 minutes' "
                    "from generate_series(0, 99) i")
    return source, warehouse


def event(source: Location, message: str, created_at: datetime | None) -> None:
    run_sql(source, "insert into system_events (event_type, severity, message, created_at) "
                    "values ('POST_FAILED', 'error', ?, ?)", (message, created_at))


def test_a_null_event_time_is_quarantined_once_in_every_mode(locations):
    source, warehouse = locations
    extract_table(source, warehouse, "system_events")
    event(source, "no time", None)

    first = extract_table(source, warehouse, "system_events")  # incremental: NULL times are read too
    assert first.quarantined_by_reason == {"missing_created_at": 1} and first.rows_newly_quarantined == 1
    assert not quarantine_check(first).passed
    second = extract_table(source, warehouse, "system_events")
    assert second.rows_newly_quarantined == 0 and second.quarantine_open == 1
    assert quarantine_check(second).passed  # quarantined once: not red for ever
    refresh = extract_table(source, warehouse, "system_events", ExtractRequest(mode="full_refresh"))
    assert refresh.rows_newly_quarantined == 0 and refresh.quarantine_open == 1
    assert_raw_equals_source(source, warehouse, ["system_events"])

    # the writer fixes its row: the good version lands and the entry is resolved
    run_sql(source, "update system_events set created_at = now() - interval '5 minutes' where message = 'no time'")
    fixed = extract_table(source, warehouse, "system_events")
    assert fixed.rows_inserted == 1 and fixed.quarantine_open == 0
    assert run_sql(warehouse, "select resolution from raw._quarantine") == [("loaded",)]
    assert_raw_equals_source(source, warehouse, ["system_events"])


def test_a_back_dated_event_is_caught_by_the_hot_window_in_the_same_run(locations):
    source, warehouse = locations
    extract_table(source, warehouse, "system_events")
    back_dated = NOW - timedelta(hours=9)  # far beyond the 30-minute overlap
    event(source, "committed 9 hours late", back_dated)

    result = extract_table(source, warehouse, "system_events", ExtractRequest(reconcile=False))
    [hot] = result.reconciles
    assert hot.scope == "hot" and hot.differing == [back_dated.date().isoformat()] and hot.repaired == hot.differing
    assert result.rows_inserted == 1 and not result.unresolved and reconcile_check(result).passed
    assert_raw_equals_source(source, warehouse, ["system_events"])


def test_an_event_back_dated_beyond_the_hot_window_is_caught_by_the_reconcile(locations):
    source, warehouse = locations
    # noon ten days ago, and three hours earlier the same day, whatever the hour the test runs at
    ten_days_ago = (NOW - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    event(source, "ten days ago", ten_days_ago)
    extract_table(source, warehouse, "system_events")
    very_old = ten_days_ago - timedelta(hours=3)
    event(source, "committed ten days late", very_old)

    hourly = extract_table(source, warehouse, "system_events", ExtractRequest(reconcile=False))
    assert hourly.rows_inserted == 0  # neither the overlap nor the hot window reaches it
    due = extract_table(source, warehouse, "system_events", ExtractRequest(reconcile=True))
    [full] = due.reconciles
    assert full.scope == "full" and full.differing == [very_old.date().isoformat()]
    assert full.repairs == [f"repair {very_old.date().isoformat()}"] and due.rows_inserted == 1
    assert_raw_equals_source(source, warehouse, ["system_events"])
    assert run_sql(warehouse, "select scope, outcome, source_rows, raw_rows from raw._reconcile_log") == [
        ("full", "repaired", 2, 1)]
    # the full reconcile is recorded; the next run does not repeat it until it is due again
    after = extract_table(source, warehouse, "system_events")
    assert [r.scope for r in after.reconciles] == ["hot"]


def test_the_full_reconcile_runs_when_due(locations, monkeypatch):
    source, warehouse = locations
    extract_table(source, warehouse, "system_events")
    event(source, "old", NOW - timedelta(days=8))
    monkeypatch.setenv("OPS_RECONCILE_INTERVAL_HOURS", "0.000001")  # due at once (3.6 ms)
    due = extract_table(source, warehouse, "system_events")
    assert [r.scope for r in due.reconciles] == ["full"] and due.rows_inserted == 1
    state = run_sql(warehouse, "select last_reconciled_at is not null, last_reconcile_run_id from raw._extract_state "
                               "where source_table = 'system_events'")
    assert state == [(True, due.run_id)]


def test_a_difference_that_survives_the_re_read_fails_the_check(pg_databases, tmp_path):
    """A source view whose rows change between two reads of one snapshot (a volatile column):
    the re-read cannot make the day agree, and the check says which day."""
    source = Location.parse(pg_databases.new("src"))
    create_source_schema(source)
    warehouse = Location.parse(str(tmp_path / "wh.duckdb"))
    run_sql(source, "insert into system_events (event_type, severity, message, created_at) "
                    "select 'tick', 'info', 'tick ' || i, now() - interval '2 days' - i * interval '1 minute' "
                    "from generate_series(0, 9) i")
    run_sql(source, "create view system_events_live as select id, event_type, event_data, metadata, severity, "
                    "message || case when random() < 0.5 then '' else ' ' end as message, component, "
                    "\"timestamp\", created_at from system_events")
    relation = SourceRelation.for_spec(TABLES["system_events"], name="system_events_live")
    extract_table(source, warehouse, "system_events", relation=relation)
    result = extract_table(source, warehouse, "system_events", ExtractRequest(reconcile=True), relation=relation)
    day = (NOW - timedelta(days=2)).date().isoformat()
    assert result.unresolved == [day]
    check = reconcile_check(result)
    assert not check.passed and check.metadata["days_unresolved"].value == [day]
    assert run_sql(warehouse, "select outcome from raw._reconcile_log") == [("unresolved",)]
