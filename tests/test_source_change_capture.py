"""Change capture that does not trust ``updated_at``: the bot changes decision statuses (and
heartbeats, posting attempts, scraper runs) in place, most often without touching ``updated_at``.

A PostgreSQL source into both warehouses; after each hourly run raw equals the source
(tests/source_fidelity.py), and every observed change of a decision is in raw.decision_snapshots
with the time it was observed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from source_fidelity import assert_raw_equals_source, new_locations, run_sql

from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.settings import Location

DECISIONS = "content_generation_metadata_comprehensive"
WAREHOUSES = ["duckdb", "postgres"]
NOW = datetime.now(timezone.utc)


@pytest.fixture
def locations(request, pg_databases, tmp_path):
    return new_locations(request.param, pg_databases, tmp_path)


def add_decision(source: Location, decision_id: str, created_at: datetime, status: str = "queued") -> None:
    run_sql(source, f"insert into {DECISIONS} (decision_id, decision_type, status, scheduled_at, features, "
                    "created_at, updated_at) values (?, 'single', ?, ?, ?, ?, ?)",
            (decision_id, status, created_at + timedelta(minutes=30), json.dumps({"retry_count": 0}),
             created_at, created_at))


def snapshots(warehouse: Location, decision_id: str) -> list[tuple]:
    return run_sql(warehouse, "select status, _change, _observed_at from raw.decision_snapshots "
                              f"where decision_id = '{decision_id}' order by _observed_at")


@pytest.mark.parametrize("locations", WAREHOUSES, indirect=True)
def test_a_status_change_without_updated_at_reaches_raw_in_the_next_hourly_run(locations):
    source, warehouse = locations
    for i in range(4):
        add_decision(source, f"d-{i}", NOW - timedelta(hours=5 - i))
    first = extract_table(source, warehouse, DECISIONS)
    assert first.rows_inserted == 4

    # the posting writer: status, posted_at, tweet_id — updated_at left as it was (5 hours ago)
    run_sql(source, f"update {DECISIONS} set status = 'posted', posted_at = now(), "
                    "tweet_id = '1870000000000000001' where decision_id = 'd-0'")
    # the failure writer, and a retry that only changes the error text
    run_sql(source, f"update {DECISIONS} set status = 'failed', error_message = 'Timeout 30000ms' "
                    "where decision_id = 'd-1'")
    before = run_sql(source, f"select updated_at from {DECISIONS} where decision_id = 'd-0'")[0][0]
    assert before < NOW - timedelta(hours=4), "the writer left updated_at stale"

    second = extract_table(source, warehouse, DECISIONS)
    assert (second.rows_updated, second.rows_inserted) == (2, 0)
    assert_raw_equals_source(source, warehouse, [DECISIONS])
    raw = dict(run_sql(warehouse, f"select decision_id, status from raw.{DECISIONS}"))
    assert raw == {"d-0": "posted", "d-1": "failed", "d-2": "queued", "d-3": "queued"}

    # the change log: first sight, then the change, each with when the warehouse observed it
    history = snapshots(warehouse, "d-0")
    assert [(s, c) for s, c, _ in history] == [("queued", "inserted"), ("posted", "updated")]
    assert history[1][2] > history[0][2]
    assert [(s, c) for s, c, _ in snapshots(warehouse, "d-2")] == [("queued", "inserted")]

    # an hourly run with nothing new changes nothing and records nothing
    third = extract_table(source, warehouse, DECISIONS)
    assert (third.rows_updated, third.rows_inserted, third.rows_marked_deleted, third.snapshots_added) == (0, 0, 0, 0)
    assert len(snapshots(warehouse, "d-0")) == 2


@pytest.mark.parametrize("locations", WAREHOUSES, indirect=True)
def test_a_change_older_than_the_hot_window_waits_for_the_reconcile(locations):
    source, warehouse = locations
    add_decision(source, "old", NOW - timedelta(days=10))  # created long before the hot window
    add_decision(source, "new", NOW - timedelta(hours=1))
    extract_table(source, warehouse, DECISIONS)
    run_sql(source, f"update {DECISIONS} set status = 'archived' where decision_id = 'old'")

    hourly = extract_table(source, warehouse, DECISIONS, ExtractRequest(reconcile=False))
    assert hourly.rows_updated == 0  # outside the hot window (3 days) and updated_at untouched
    assert run_sql(warehouse, f"select status from raw.{DECISIONS} where decision_id = 'old'") == [("queued",)]

    reconcile = extract_table(source, warehouse, DECISIONS, ExtractRequest(reconcile=True))
    [report] = reconcile.reconciles
    old_day = (NOW - timedelta(days=10)).date().isoformat()
    assert report.scope == "full" and report.differing == [old_day] and report.repaired == [old_day]
    assert reconcile.rows_updated == 1 and not reconcile.unresolved
    assert_raw_equals_source(source, warehouse, [DECISIONS])
    assert [s for s, _, _ in snapshots(warehouse, "old")] == ["queued", "archived"]
    logged = run_sql(warehouse, f"select scope, outcome, source_rows, raw_rows from raw._reconcile_log "
                                f"where source_table = '{DECISIONS}'")
    assert logged == [("full", "repaired", 1, 1)]


@pytest.mark.parametrize("locations", WAREHOUSES, indirect=True)
def test_heartbeats_attempts_and_scraper_runs_changed_in_place(locations):
    source, warehouse = locations
    t0 = NOW - timedelta(hours=2)
    run_sql(source, "insert into job_heartbeats (job_name, last_success, last_run_status, consecutive_failures, "
                    "updated_at) values ('posting', ?, 'success', 0, ?), ('plan', ?, 'success', 0, ?)",
            (t0, t0, t0, t0))
    run_sql(source, "insert into posting_attempts (job_type, decision_id, status, created_at) "
                    "values ('posting', 'd-1', 'attempting', ?), ('posting', 'd-2', 'success', ?)", (t0, t0))
    run_sql(source, "insert into metrics_scraper_runs (run_at, status, duration_ms) values (?, 'completed', 900)",
            (t0,))
    tables = ["job_heartbeats", "posting_attempts", "metrics_scraper_runs"]
    for table in tables:
        extract_table(source, warehouse, table)

    # an older writer sets the status without updated_at; a recovery job fixes an attempt's
    # status; a scraper run's duration is corrected — no timestamp moves anywhere
    run_sql(source, "update job_heartbeats set last_run_status = 'failed', consecutive_failures = 3 "
                    "where job_name = 'posting'")
    run_sql(source, "update posting_attempts set status = 'post_succeeded_db_write_failed', "
                    "tweet_id = '1870000000000000002' where decision_id = 'd-1'")
    run_sql(source, "update metrics_scraper_runs set duration_ms = 1200")
    updated = {table: extract_table(source, warehouse, table).rows_updated for table in tables}
    assert updated == {"job_heartbeats": 1, "posting_attempts": 1, "metrics_scraper_runs": 1}
    assert_raw_equals_source(source, warehouse, tables)
    states = run_sql(warehouse, "select last_run_status, consecutive_failures from raw.job_heartbeat_snapshots "
                                "where job_name = 'posting' order by _observed_at")
    assert states == [("success", 0), ("failed", 3)]
