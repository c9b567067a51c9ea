"""Extraction: exactly once, late rows, deletes, heartbeat snapshots, quarantine, crash safety.

Real engines only: PostgreSQL on 127.0.0.1:5432 (a database per test) and DuckDB files.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import duckdb
import psycopg
import pytest
import source_fidelity

from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.settings import Location
from orchestration.lib.source.schema import create_source_schema

NOW = datetime.now(timezone.utc)


# ---------------------------------------------------------------------------------------------
# helpers


def make_source(kind: str, pg_databases, tmp_path) -> Location:
    if kind == "postgres":
        loc = Location.parse(pg_databases.new("src"))
    else:
        loc = Location.parse(str(tmp_path / "src.duckdb"))
    create_source_schema(loc)
    return loc


def make_warehouse(kind: str, pg_databases, tmp_path) -> Location:
    return Location.parse(pg_databases.new("wh")) if kind == "postgres" else Location.parse(str(tmp_path / "wh.duckdb"))


def source_exec(loc: Location, sql: str, params=None) -> list:
    if loc.is_postgres:
        with psycopg.connect(loc.dsn, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    conn = duckdb.connect(str(loc.path))
    try:
        res = conn.execute(sql, params)
        return res.fetchall() if res.description else []
    finally:
        conn.close()


def wh_query(loc: Location, sql: str) -> list:
    if loc.is_postgres:
        with psycopg.connect(loc.dsn) as conn:
            return conn.execute(sql).fetchall()
    conn = duckdb.connect(str(loc.path), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def insert_events(loc: Location, n: int, *, start: datetime, step_seconds: float = 1.0,
                  event_type: str = "POST_FAILED") -> None:
    """n events ending at `start`, going back in time, one second apart by default (bulk SQL)."""
    if loc.is_postgres:
        source_exec(loc, f"""
            insert into system_events (event_type, event_data, severity, message, created_at, "timestamp")
            select '{event_type}', jsonb_build_object('error', 'Timeout ' || i || 'ms', 'decision_id', md5(i::text)),
                   'error', 'post failed ' || i, ts, ts
            from (select i, timestamptz '{start.isoformat()}' - (i * interval '{step_seconds} seconds') ts
                  from generate_series(0, {n - 1}) i) g""")
    else:
        source_exec(loc, f"""
            insert into system_events (id, event_type, event_data, severity, message, created_at, "timestamp")
            select uuid()::varchar, '{event_type}', json_object('error', 'Timeout ' || i || 'ms')::varchar,
                   'error', 'post failed ' || i, ts, ts
            from (select i, timestamptz '{start.isoformat()}' - (i * interval '{step_seconds} seconds') ts
                  from range({n}) t(i)) g""")


def assert_raw_equals_source(source: Location, warehouse: Location) -> None:
    src_ids = sorted(r[0] for r in source_exec(source, "select cast(id as varchar) from system_events"))
    raw = wh_query(warehouse, "select id from raw.system_events where _deleted_at is null")
    raw_ids = sorted(r[0] for r in raw)
    assert len(raw_ids) == len(set(raw_ids)), "duplicates in raw"
    assert raw_ids == src_ids


WAREHOUSES = ["duckdb", "postgres"]
PAIRS = [("postgres", "duckdb"), ("postgres", "postgres"), ("duckdb", "duckdb"), ("duckdb", "postgres")]


# ---------------------------------------------------------------------------------------------
# exactly once


@pytest.mark.parametrize("source_kind,warehouse_kind", PAIRS)
def test_incremental_runs_load_each_row_exactly_once(source_kind, warehouse_kind, pg_databases, tmp_path):
    source = make_source(source_kind, pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    insert_events(source, 500, start=NOW - timedelta(hours=2), step_seconds=60)

    first = extract_table(source, warehouse, "system_events")
    assert (first.rows_read, first.rows_inserted) == (500, 500)
    assert first.cursor_after == (NOW - timedelta(hours=2)).replace(microsecond=first.cursor_after.microsecond)

    insert_events(source, 30, start=NOW - timedelta(minutes=1), step_seconds=1)
    second = extract_table(source, warehouse, "system_events")
    assert second.rows_inserted == 30
    assert second.rows_read < 100, "only the overlap window and new rows are re-read"

    third = extract_table(source, warehouse, "system_events")
    assert third.rows_inserted == 0 and third.rows_updated == 0
    assert_raw_equals_source(source, warehouse)


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_late_committed_row_with_older_timestamp_is_picked_up(warehouse_kind, pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    insert_events(source, 100, start=NOW - timedelta(seconds=5), step_seconds=10)
    extract_table(source, warehouse, "system_events")

    # a writer stamped created_at 10 minutes ago, and its transaction only commits now
    source_exec(source, "insert into system_events (event_type, severity, created_at) values (?, ?, ?)",
                ("LATE_WRITER", "error", NOW - timedelta(minutes=10)))
    result = extract_table(source, warehouse, "system_events")
    assert result.rows_inserted == 1
    assert wh_query(warehouse, "select count(*) from raw.system_events where event_type = 'LATE_WRITER'") == [(1,)]
    assert_raw_equals_source(source, warehouse)


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_backfill_recovers_a_row_older_than_the_overlap_without_moving_the_cursor(
        warehouse_kind, pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    insert_events(source, 50, start=NOW, step_seconds=10)
    cursor = extract_table(source, warehouse, "system_events").cursor_after
    very_late = NOW - timedelta(days=2, hours=1)
    source_exec(source, "insert into system_events (event_type, severity, created_at) values (?, ?, ?)",
                ("VERY_LATE", "error", very_late))

    # outside the overlap and (with a 1-day hot window) outside the days each run re-checks
    assert extract_table(source, warehouse, "system_events",
                         ExtractRequest(hot_window=timedelta(days=1), reconcile=False)).rows_inserted == 0
    backfill = ExtractRequest(mode="backfill", backfill_start=very_late - timedelta(hours=1),
                              backfill_end=very_late + timedelta(hours=1))
    result = extract_table(source, warehouse, "system_events", backfill)
    assert result.rows_inserted == 1 and result.cursor_after == cursor
    assert_raw_equals_source(source, warehouse)


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_deleted_source_event_is_marked_not_dropped(warehouse_kind, pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    insert_events(source, 20, start=NOW, step_seconds=30)
    insert_events(source, 3, start=NOW - timedelta(minutes=2), event_type="verification_failed")
    extract_table(source, warehouse, "system_events")

    source_exec(source, "delete from system_events where event_type = 'verification_failed'")
    result = extract_table(source, warehouse, "system_events")
    assert result.rows_marked_deleted == 3
    rows = wh_query(warehouse, "select event_type, _deleted_at is not null from raw.system_events")
    assert sorted(r for r in rows if r[0] == "verification_failed") == [("verification_failed", True)] * 3
    assert sum(1 for r in rows if r[1]) == 3  # nothing else marked
    # a full refresh keeps the history of deleted rows
    refresh = extract_table(source, warehouse, "system_events", ExtractRequest(mode="full_refresh"))
    assert refresh.rows_marked_deleted == 0 and refresh.rows_inserted == 0
    assert wh_query(warehouse, "select count(*) from raw.system_events where _deleted_at is not null") == [(3,)]


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_heartbeat_snapshots_accumulate_as_jobs_upsert(warehouse_kind, pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    upsert = """insert into job_heartbeats (job_name, last_success, last_failure, last_run_status,
                    last_error, consecutive_failures, updated_at) values (?, ?, ?, ?, ?, ?, ?)
                on conflict (job_name) do update set last_success = excluded.last_success,
                    last_failure = excluded.last_failure, last_run_status = excluded.last_run_status,
                    last_error = excluded.last_error, consecutive_failures = excluded.consecutive_failures,
                    updated_at = excluded.updated_at"""
    t0 = NOW - timedelta(hours=1)
    states = [
        ("posting", t0, None, "success", None, 0, t0),
        ("posting", t0, t0 + timedelta(minutes=5), "failure", "timeout", 1, t0 + timedelta(minutes=5)),
        ("posting", t0, t0 + timedelta(minutes=10), "failed", "timeout", 4, t0 + timedelta(minutes=10)),
    ]
    for state in states:
        source_exec(source, upsert, state)
        source_exec(source, upsert, ("plan", t0, None, "success", None, 0, t0))  # unchanged job
        extract_table(source, warehouse, "job_heartbeats")
    extract_table(source, warehouse, "job_heartbeats")  # a read with no change adds nothing

    snaps = wh_query(warehouse, "select job_name, consecutive_failures, last_run_status from "
                                "raw.job_heartbeat_snapshots order by job_name, updated_at")
    assert snaps == [("plan", 0, "success"), ("posting", 0, "success"), ("posting", 1, "failure"),
                     ("posting", 4, "failed")]
    assert wh_query(warehouse, "select count(*) from raw.job_heartbeats") == [(2,)]


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_rows_updated_in_place_are_merged_on_their_key(warehouse_kind, pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    source_exec(source, """insert into content_generation_metadata_comprehensive
        (decision_id, decision_type, status, features, created_at, updated_at) values (?, ?, ?, ?, ?, ?)""",
                ("d-1", "single", "queued", json.dumps({"retry_count": 0}), NOW - timedelta(minutes=9),
                 NOW - timedelta(minutes=9)))
    extract_table(source, warehouse, "content_generation_metadata_comprehensive")
    source_exec(source, "update content_generation_metadata_comprehensive set status = 'posted', "
                        "tweet_id = '1870000000000000001', updated_at = ? where decision_id = 'd-1'", (NOW,))
    result = extract_table(source, warehouse, "content_generation_metadata_comprehensive")
    assert (result.rows_updated, result.rows_inserted) == (1, 0)
    merged = wh_query(warehouse, "select decision_id, status, tweet_id from "
                                 "raw.content_generation_metadata_comprehensive")
    assert merged == [("d-1", "posted", "1870000000000000001")]


# ---------------------------------------------------------------------------------------------
# bad rows


def test_each_kind_of_bad_row_is_quarantined_with_its_reason_duckdb_source(pg_databases, tmp_path):
    source = make_source("duckdb", pg_databases, tmp_path)
    warehouse = make_warehouse("duckdb", pg_databases, tmp_path)
    source_exec(source, "alter table system_events alter column event_type drop not null")
    insert_events(source, 10, start=NOW - timedelta(minutes=1))
    bad = [
        ("b-json", "POST_FAILED", '{"error": "unterminated', None, NOW),
        ("b-meta", "POST_FAILED", None, "not json at all", NOW),
        ("b-type", None, '{"error": "x"}', None, NOW),
        ("b-future", "POST_FAILED", '{}', None, NOW + timedelta(days=30)),
        ("b-nots", "POST_FAILED", '{}', None, None),
    ]
    for row in bad:
        source_exec(source, "insert into system_events (id, event_type, event_data, metadata, created_at) "
                            "values (?, ?, ?, ?, ?)", row)
    result = extract_table(source, warehouse, "system_events")
    assert result.rows_inserted == 10
    assert result.quarantined_by_reason == {
        "invalid_json_event_data": 1, "invalid_json_metadata": 1, "missing_event_type": 1,
        "future_created_at": 1, "missing_created_at": 1}
    reasons = dict(wh_query(warehouse, "select row_key, reason from raw._quarantine"))
    assert reasons == {"b-json": "invalid_json_event_data", "b-meta": "invalid_json_metadata",
                       "b-type": "missing_event_type", "b-future": "future_created_at",
                       "b-nots": "missing_created_at"}
    # the cursor did not jump to the future row: a row arriving now is still read next time
    assert result.cursor_after <= datetime.now(timezone.utc)
    again = extract_table(source, warehouse, "system_events")
    assert wh_query(warehouse, "select count(*) from raw._quarantine") == [(5,)], "re-reads add no duplicates"
    assert again.rows_inserted == 0


def test_bad_rows_from_a_postgres_source_with_a_text_payload_column(pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse("postgres", pg_databases, tmp_path)
    # some environments carry the payload in a text column without the NOT NULL on event_type
    source_exec(source, "alter table system_events alter column metadata type text")
    source_exec(source, "alter table system_events alter column event_type drop not null")
    insert_events(source, 10, start=NOW - timedelta(minutes=1))
    source_exec(source, "insert into system_events (event_type, metadata, created_at) values (?, ?, ?)",
                ("POST_FAILED", "{broken", NOW))
    source_exec(source, "insert into system_events (event_type, metadata, created_at) values (?, ?, ?)",
                (None, '{"ok": true}', NOW))
    source_exec(source, "insert into system_events (event_type, created_at) values (?, ?)",
                ("POST_FAILED", NOW + timedelta(days=400)))
    result = extract_table(source, warehouse, "system_events")
    assert result.rows_inserted == 10
    assert result.quarantined_by_reason == {"invalid_json_metadata": 1, "missing_event_type": 1,
                                            "future_created_at": 1}


def test_a_source_without_the_metadata_column_still_loads(pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse("duckdb", pg_databases, tmp_path)
    source_exec(source, "alter table system_events drop column metadata")
    insert_events(source, 5, start=NOW)
    assert extract_table(source, warehouse, "system_events").rows_inserted == 5
    assert wh_query(warehouse, "select count(metadata), count(event_data) from raw.system_events") == [(0, 5)]


# ---------------------------------------------------------------------------------------------
# crash safety


def _terminate_backends(dsn: str) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                      "where datname = %s and pid <> pg_backend_pid()", (dbname,))


@pytest.mark.parametrize("warehouse_kind,kill,first_load", [
    ("duckdb", "source", False), ("postgres", "source", False), ("postgres", "warehouse", False),
    ("duckdb", "source", True), ("postgres", "warehouse", True),  # PostgreSQL's bulk first-load path
])
def test_connection_killed_mid_extract_then_rerun_equals_source(warehouse_kind, kill, first_load,
                                                                pg_databases, tmp_path):
    source = make_source("postgres", pg_databases, tmp_path)
    warehouse = make_warehouse(warehouse_kind, pg_databases, tmp_path)
    insert_events(source, 150_000, start=NOW - timedelta(hours=1), step_seconds=0.5)
    if not first_load:
        extract_table(source, warehouse, "system_events")  # an earlier good run: the cursor exists
    insert_events(source, 150_000, start=NOW, step_seconds=0.01)

    victim = source if kill == "source" else warehouse
    fired = threading.Event()

    def kill_after_first_chunk(rows_so_far: int) -> None:
        if not fired.is_set():
            fired.set()
            _terminate_backends(victim.dsn)

    with pytest.raises(Exception):
        extract_table(source, warehouse, "system_events",
                      on_batch=kill_after_first_chunk)
    assert fired.is_set()
    extract_table(source, warehouse, "system_events")
    assert_raw_equals_source(source, warehouse)
    assert wh_query(warehouse, "select count(*) from raw.system_events") == [(300_000,)]


# ---------------------------------------------------------------------------------------------
# against the simulator, slice by slice: late commits, guard deletes and heartbeat upserts


def test_extracting_simulator_slices_loses_and_duplicates_nothing(pg_databases, tmp_path):
    from orchestration.lib.extract.engine import extract_all
    from orchestration.lib.simulator import simulate

    source = Location.parse(pg_databases.new("src"))
    warehouse = make_warehouse("duckdb", pg_databases, tmp_path)
    end = datetime(2026, 6, 4, tzinfo=timezone.utc)
    days, seed = 4, 23  # seed 23 places a late-commit and a guard-delete incident in these 4 days
    # the truth first (same seed, same rows), to cut slices densely through the guard-delete
    # window: every deleted row is then seen by some extraction before it goes
    truth = simulate(Location.parse(str(tmp_path / "scratch.duckdb")), days=days, seed=seed, end=end,
                     truth_path=tmp_path / "scratch.json").incidents
    cuts = {end - timedelta(days=days) + timedelta(hours=6 * i) for i in range(days * 4 + 1)}
    for inc in truth:
        if inc["kind"] == "deleted_verification_failed":
            start, stop = datetime.fromisoformat(inc["start"]), datetime.fromisoformat(inc["end"])
            cuts |= {start + timedelta(minutes=3 * k) for k in range(int((stop - start).total_seconds() // 180) + 1)}
    cuts = sorted(cuts)
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        simulate(source, days=days, seed=seed, end=end, write_from=a, write_to=b, reset=(i == 0),
                 truth_path=tmp_path / "truth.json")
        extract_all(source, warehouse)

    # the hot window's days were re-checked every run; the daily full reconcile covers the rest
    extract_all(source, warehouse, ExtractRequest(reconcile=True))
    source_fidelity.assert_raw_equals_source(source, warehouse)
    late_ids = [e for inc in truth if inc["kind"] == "late_commit" for e in inc["details"]["event_ids"]]
    deleted_ids = [e for inc in truth if inc["kind"] == "deleted_verification_failed"
                   for e in inc["details"]["event_ids"]]
    assert late_ids and deleted_ids, "the simulator should inject both kinds in 4 days"
    raw = dict(wh_query(warehouse, "select id, _deleted_at is not null from raw.system_events"))
    assert all(raw.get(i) is False for i in late_ids), "every late-committed row is loaded and live"
    assert all(raw.get(i) is True for i in deleted_ids), "every guard-deleted row is kept, marked deleted"

    # heartbeats: one snapshot per job per slice in which it changed, never more
    snaps = wh_query(warehouse, "select job_name, count(*) from raw.job_heartbeat_snapshots group by 1")
    assert snaps and all(1 <= n <= len(cuts) - 1 for _, n in snaps)
    assert max(n for _, n in snaps) >= days * 4, "a 5-minute job changes in every 6-hour slice"


# ---------------------------------------------------------------------------------------------
# a full refresh into DuckDB in slices


def _raw_rows(warehouse: Location) -> list[tuple]:
    """raw.system_events without the load stamps (two warehouses load at different instants)."""
    return wh_query(warehouse, """select id, event_type, message, created_at, _row_hash, _deleted_at is not null
                                  from raw.system_events order by id""")


@pytest.mark.parametrize("duplicate_key", [False, True])
def test_full_refresh_in_slices_equals_the_whole_read(duplicate_key, pg_databases, tmp_path, monkeypatch):
    """Two DuckDB warehouses hold the same source; one full refresh runs in slices of ~40 rows
    (whole days), the other at once: the same rows, deletions, quarantine and counts. A source that
    repeats a key is read whole (each slice would see one copy)."""
    source = make_source("postgres", pg_databases, tmp_path)
    insert_events(source, 240, start=NOW, step_seconds=1800)  # 5 days, 48 a day
    sliced, whole = (Location.parse(str(tmp_path / f"{name}.duckdb")) for name in ("sliced", "whole"))
    for warehouse in (sliced, whole):
        extract_table(source, warehouse, "system_events")

    # changes on several days: an edit, deletions, an absurd timestamp, a row without created_at
    source_exec(source, "update system_events set message = 'edited' where id in "
                        "(select id from system_events order by created_at limit 1)")
    source_exec(source, "delete from system_events where id in "
                        "(select id from system_events order by created_at offset 100 limit 3)")
    source_exec(source, "insert into system_events (event_type, severity, created_at) values (?, ?, ?)",
                ("ABSURD", "error", datetime(1970, 1, 2, tzinfo=timezone.utc)))
    source_exec(source, "insert into system_events (event_type, severity, created_at) values ('NO_TIME', 'error', null)")
    if duplicate_key:
        source_exec(source, "alter table system_events drop constraint system_events_pkey")
        source_exec(source, "insert into system_events (id, event_type, severity, created_at) "
                            "select id, 'COPY', severity, created_at - interval '3 days' from system_events "
                            "where event_type = 'POST_FAILED' order by created_at desc limit 1")

    results = {}
    for warehouse, slice_rows in ((sliced, "40"), (whole, "100000")):
        monkeypatch.setenv("OPS_EXTRACT_SLICE_ROWS", slice_rows)
        results[warehouse] = extract_table(source, warehouse, "system_events", ExtractRequest(mode="full_refresh"))
    a, b = results[sliced], results[whole]
    # one slice per day (48 rows ≥ 40) over 5–6 UTC days, and the rows without created_at
    assert (a.counts.slices == 0) if duplicate_key else (6 <= a.counts.slices <= 7)
    assert b.counts.slices == 0
    assert (a.rows_read, a.rows_inserted, a.rows_updated, a.rows_marked_deleted, a.quarantined_by_reason) == \
           (b.rows_read, b.rows_inserted, b.rows_updated, b.rows_marked_deleted, b.quarantined_by_reason)
    assert a.rows_updated == 1 and a.rows_marked_deleted == 3
    assert sum(a.quarantined_by_reason.values()) == (4 if duplicate_key else 2)
    assert _raw_rows(sliced) == _raw_rows(whole)
    quarantine = "select reason, row_key, resolved_at is null from raw._quarantine order by 1, 2"
    assert wh_query(sliced, quarantine) == wh_query(whole, quarantine)
    assert a.cursor_after == b.cursor_after
