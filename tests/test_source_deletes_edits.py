"""Deletes and in-place edits reach raw in every table: within the hot window in the hourly run,
everywhere on the reconcile and on a full refresh. Deleted rows are marked ``_deleted_at`` (history
kept), edited rows are updated and counted.

A PostgreSQL source into both warehouses; raw equals the source after each run
(tests/source_fidelity.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from source_fidelity import assert_raw_equals_source, new_locations, run_sql

from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.settings import Location

NOW = datetime.now(timezone.utc)
DECISIONS = "content_generation_metadata_comprehensive"

# per table: rows to insert (n, created at), the delete, the in-place edit (no timestamp moves)
SEED = {
    "system_events": (
        "insert into system_events (event_type, event_data, severity, message, created_at, \"timestamp\") "
        "select 'POST_FAILED', jsonb_build_object('error', 'Timeout ' || i), 'error', 'msg ' || i, ts, ts "
        "from (select i, {start}::timestamptz + i * interval '1 minute' as ts from generate_series(0, 9) i) g",
        "delete from system_events where message = 'msg 3'",
        "update system_events set severity = 'critical', message = 'edited' where message = 'msg 5'",
    ),
    "job_heartbeats": (
        "insert into job_heartbeats (job_name, last_success, last_run_status, consecutive_failures, updated_at) "
        "select 'job_' || i, {start}::timestamptz, 'success', 0, {start}::timestamptz + i * interval '1 minute' "
        "from generate_series(0, 9) i",
        "delete from job_heartbeats where job_name = 'job_3'",
        "update job_heartbeats set last_error = 'edited' where job_name = 'job_5'",
    ),
    DECISIONS: (
        f"insert into {DECISIONS} (decision_id, decision_type, status, features, created_at, updated_at) "
        "select 'd-' || i, 'single', 'queued', '{{\"retry_count\": 0}}'::jsonb, "
        "{start}::timestamptz + i * interval '1 minute', {start}::timestamptz + i * interval '1 minute' "
        "from generate_series(0, 9) i",
        f"delete from {DECISIONS} where decision_id = 'd-3'",
        f"update {DECISIONS} set skip_reason = 'edited', status = 'skipped' where decision_id = 'd-5'",
    ),
    "posting_attempts": (
        "insert into posting_attempts (job_type, decision_id, status, created_at) "
        "select 'posting', 'd-' || i, 'success', {start}::timestamptz + i * interval '1 minute' "
        "from generate_series(0, 9) i",
        "delete from posting_attempts where decision_id = 'd-3'",
        "update posting_attempts set error_message = 'edited' where decision_id = 'd-5'",
    ),
    "metrics_scraper_runs": (
        "insert into metrics_scraper_runs (run_at, status, duration_ms) "
        "select {start}::timestamptz + i * interval '1 minute', 'completed', 1000 + i from generate_series(0, 9) i",
        "delete from metrics_scraper_runs where duration_ms = 1003",
        "update metrics_scraper_runs set skip_reason = 'edited' where duration_ms = 1005",
    ),
}


def _seed(source: Location, start: datetime) -> None:
    """Ten rows per table from ``start``, and one row a minute old: the cursor is at now, so the
    seeded rows are outside the overlap every run re-reads."""
    for table, (insert, _, _) in SEED.items():
        run_sql(source, insert.format(start=f"'{start.isoformat()}'"))
    fresh = NOW - timedelta(minutes=1)
    run_sql(source, "insert into system_events (event_type, severity, created_at) values ('fresh', 'info', ?)",
            (fresh,))
    run_sql(source, "insert into job_heartbeats (job_name, last_run_status, updated_at) values ('fresh', 'success', ?)",
            (fresh,))
    run_sql(source, f"insert into {DECISIONS} (decision_id, status, created_at, updated_at) "
                    "values ('fresh', 'queued', ?, ?)", (fresh, fresh))
    run_sql(source, "insert into posting_attempts (decision_id, status, created_at) values ('fresh', 'success', ?)",
            (fresh,))
    run_sql(source, "insert into metrics_scraper_runs (run_at, status) values (?, 'completed')", (fresh,))


def _delete_and_edit(source: Location) -> None:
    for _, delete, edit in SEED.values():
        run_sql(source, delete)
        run_sql(source, edit)


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_delete_and_an_edit_in_each_table_reach_raw_in_the_hourly_run(kind, pg_databases, tmp_path):
    source, warehouse = new_locations(kind, pg_databases, tmp_path)
    _seed(source, NOW - timedelta(hours=6))  # inside the hot window, outside the 30-min overlap
    for table in TABLES:
        extract_table(source, warehouse, table)
    _delete_and_edit(source)

    for table in TABLES:
        result = extract_table(source, warehouse, table, ExtractRequest(reconcile=False))
        assert (result.rows_marked_deleted, result.rows_updated, result.rows_inserted) == (1, 1, 0), table
        if table == "system_events":  # found by the hot window's per-day counts and hash sums
            assert result.reconciles[0].scope == "hot" and result.reconciles[0].repaired, result.reconciles
    comparison = assert_raw_equals_source(source, warehouse)
    assert {t: (c.raw_live, c.deleted_marked) for t, c in comparison.items()} == {t: (10, 1) for t in TABLES}
    # history kept: the deleted row is still in raw, marked
    assert run_sql(warehouse, "select count(*) from raw.system_events where message = 'msg 3' "
                              "and _deleted_at is not null") == [(1,)]
    # the decision's change log has its deletion
    changes = run_sql(warehouse, "select decision_id, _change from raw.decision_snapshots where _change <> 'inserted'")
    assert sorted(changes) == [("d-3", "deleted"), ("d-5", "updated")]
    # and the next run finds nothing more to do
    again = [extract_table(source, warehouse, t) for t in TABLES]
    assert all((r.rows_updated, r.rows_marked_deleted, r.rows_inserted) == (0, 0, 0) for r in again)


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_old_deletes_and_edits_reach_raw_on_the_reconcile_and_on_a_full_refresh(kind, pg_databases, tmp_path):
    source, warehouse = new_locations(kind, pg_databases, tmp_path)
    old_noon = (NOW - timedelta(days=20)).replace(hour=12, minute=0, second=0, microsecond=0)
    _seed(source, old_noon)  # long before the hot window; its ten minutes within one day
    for table in TABLES:
        extract_table(source, warehouse, table)
    _delete_and_edit(source)
    hourly = {t: extract_table(source, warehouse, t, ExtractRequest(reconcile=False)) for t in TABLES}
    # only the heartbeats (re-read whole every run) see it at once
    assert {t: r.rows_marked_deleted for t, r in hourly.items()} == {t: int(t == "job_heartbeats") for t in TABLES}

    reconciled = {t: extract_table(source, warehouse, t, ExtractRequest(reconcile=True)) for t in TABLES}
    for table, result in reconciled.items():
        if table != "job_heartbeats":
            assert (result.rows_marked_deleted, result.rows_updated) == (1, 1), table
            assert result.reconciles[0].repaired == [old_noon.date().isoformat()], table
        assert not result.unresolved
    assert_raw_equals_source(source, warehouse)

    # a full refresh after more deletes marks them in every table (history kept)
    run_sql(source, "delete from system_events where message = 'msg 7'")
    run_sql(source, "delete from job_heartbeats where job_name = 'job_7'")
    run_sql(source, f"delete from {DECISIONS} where decision_id = 'd-7'")
    run_sql(source, "delete from posting_attempts where decision_id = 'd-7'")
    run_sql(source, "delete from metrics_scraper_runs where duration_ms = 1007")
    refreshed = {t: extract_table(source, warehouse, t, ExtractRequest(mode="full_refresh")) for t in TABLES}
    assert {t: r.rows_marked_deleted for t, r in refreshed.items()} == {t: 1 for t in TABLES}
    comparison = assert_raw_equals_source(source, warehouse)
    assert {t: c.deleted_marked for t, c in comparison.items()} == {t: 2 for t in TABLES}


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_row_deleted_then_written_again_is_restored(kind, pg_databases, tmp_path):
    source, warehouse = new_locations(kind, pg_databases, tmp_path)
    _seed(source, NOW - timedelta(hours=2))
    extract_table(source, warehouse, DECISIONS)
    saved = run_sql(source, f"select decision_id, created_at from {DECISIONS} where decision_id = 'd-4'")
    run_sql(source, f"delete from {DECISIONS} where decision_id = 'd-4'")
    assert extract_table(source, warehouse, DECISIONS).rows_marked_deleted == 1
    run_sql(source, f"insert into {DECISIONS} (decision_id, status, features, created_at, updated_at) "
                    "values (?, 'queued', ?, ?, ?)", (saved[0][0], json.dumps({"retry_count": 1}), saved[0][1],
                                                     saved[0][1]))
    back = extract_table(source, warehouse, DECISIONS)
    assert (back.rows_updated, back.rows_inserted) == (1, 0)
    assert_raw_equals_source(source, warehouse, [DECISIONS])
    assert [c for (c,) in run_sql(warehouse, "select _change from raw.decision_snapshots where decision_id = 'd-4' "
                                             "order by _observed_at")] == ["inserted", "deleted", "restored"]
