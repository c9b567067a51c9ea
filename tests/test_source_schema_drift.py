"""Schema drift, loud and harmless: each extract compares the source's columns with what it
expects and with what it saw last time.

- a dropped optional column is a warning, and never overwrites stored values with NULL (not even
  on a full refresh of a table updated in place);
- an added column is reported (metadata and the warning check) on the run that first sees it;
- a retyped column: compatible (int → bigint, jsonb → json) is read and reported; incompatible
  and needed by the models (created_at as text) fails that table's extract with a message naming
  it — the other tables are still extracted;
- a missing needed column fails with its name.

A PostgreSQL source into both warehouses.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from source_fidelity import assert_raw_equals_source, new_locations, run_sql

from orchestration.defs.extract.assets import schema_check
from orchestration.lib.extract.engine import ExtractError, ExtractRequest, extract_all, extract_table
from orchestration.lib.extract.raw_schema import TABLES

NOW = datetime.now(timezone.utc)
DECISIONS = "content_generation_metadata_comprehensive"


@pytest.fixture(params=["duckdb", "postgres"])
def locations(request, pg_databases, tmp_path):
    source, warehouse = new_locations(request.param, pg_databases, tmp_path)
    start = NOW - timedelta(days=1)
    run_sql(source, f"insert into {DECISIONS} (decision_id, status, skip_reason, features, created_at, updated_at) "
                    "select 'd-' || i, 'skipped', 'low_quality_' || i, ?, ? + i * interval '1 minute', "
                    "? + i * interval '1 minute' from generate_series(0, 46) i",
            (json.dumps({"retry_count": 0}), start, start))
    run_sql(source, "insert into job_heartbeats (job_name, last_run_status, consecutive_failures, updated_at) "
                    "values ('posting', 'success', 0, ?)", (NOW,))
    run_sql(source, "insert into system_events (event_type, event_data, severity, created_at) "
                    "values ('tick', '{\"n\": 1}', 'info', ?)", (NOW - timedelta(minutes=5),))
    return source, warehouse


def test_a_dropped_optional_column_keeps_its_stored_values(locations):
    source, warehouse = locations
    extract_table(source, warehouse, DECISIONS)
    # a migration drops skip_reason (the view the code reads no longer has it)
    run_sql(source, f"alter table {DECISIONS} drop column skip_reason cascade")
    run_sql(source, f"update {DECISIONS} set status = 'archived' where decision_id = 'd-1'")

    incremental = extract_table(source, warehouse, DECISIONS)
    assert incremental.drift.missing_optional == ["skip_reason"] and incremental.drift.dropped == ["skip_reason"]
    assert incremental.rows_updated == 1  # the real change still lands
    check = schema_check(incremental)
    assert not check.passed and any("skip_reason" in w for w in check.metadata["warnings"].value)
    refresh = extract_table(source, warehouse, DECISIONS, ExtractRequest(mode="full_refresh"))
    assert refresh.rows_updated == 0 and refresh.drift.missing_optional == ["skip_reason"]
    kept = run_sql(warehouse, f"select count(skip_reason) from raw.{DECISIONS}")
    assert kept == [(47,)], "47 stored skip_reason values, none overwritten with NULL"
    assert_raw_equals_source(source, warehouse, [DECISIONS], ignore_columns={DECISIONS: {"skip_reason"}})
    # missing for good: still a warning every run (not only once), the dropped-since-last-run note once
    later = extract_table(source, warehouse, DECISIONS)
    assert later.drift.missing_optional == ["skip_reason"] and later.drift.dropped == []


def test_an_added_column_is_reported_once(locations):
    source, warehouse = locations
    first = extract_table(source, warehouse, DECISIONS)
    assert first.drift.added == [] and schema_check(first).passed  # the first sight is the baseline
    run_sql(source, f"alter table {DECISIONS} add column viral_score double precision")
    seen = extract_table(source, warehouse, DECISIONS)
    assert seen.drift.added == ["viral_score (double precision)"]
    assert not schema_check(seen).passed
    assert "viral_score" in seen.drift.unread  # not extracted: the models do not read it
    assert schema_check(extract_table(source, warehouse, DECISIONS)).passed


def test_compatible_retypes_are_read_and_reported(locations):
    source, warehouse = locations
    for table in TABLES:
        extract_table(source, warehouse, table)
    run_sql(source, "alter table job_heartbeats alter column consecutive_failures type bigint")
    run_sql(source, "alter table system_events alter column event_data type json")
    run_sql(source, "update job_heartbeats set consecutive_failures = 2, last_run_status = 'failure'")
    heartbeats = extract_table(source, warehouse, "job_heartbeats")
    events = extract_table(source, warehouse, "system_events")
    assert heartbeats.drift.retyped == ["consecutive_failures: integer -> bigint"] and heartbeats.rows_updated == 1
    assert events.drift.retyped == ["event_data: jsonb -> json"]
    assert_raw_equals_source(source, warehouse, ["job_heartbeats", "system_events"])


def test_an_incompatible_needed_column_fails_only_its_table(locations):
    source, warehouse = locations
    run_sql(source, "alter table posting_attempts alter column created_at type text")
    run_sql(source, "insert into posting_attempts (decision_id, status, created_at) values ('d-1', 'success', 'soon')")
    with pytest.raises(ExtractError) as failure:
        extract_all(source, warehouse)
    message = str(failure.value)
    assert "1 of 5 tables failed" in message
    assert "posting_attempts" in message and "'created_at' has type text" in message
    # every other table was extracted
    assert_raw_equals_source(source, warehouse, [t for t in TABLES if t != "posting_attempts"])
    state = dict(run_sql(warehouse, "select source_table, last_status from raw._extract_state"))
    assert state == {**{t: "succeeded" for t in TABLES if t != "posting_attempts"}, "posting_attempts": "failed"}


def test_a_missing_needed_column_is_named(locations):
    source, warehouse = locations
    run_sql(source, "alter table job_heartbeats drop column last_run_status")
    with pytest.raises(ExtractError, match="'last_run_status' is missing"):
        extract_table(source, warehouse, "job_heartbeats")
    # either payload column may be missing, not both
    run_sql(source, "alter table system_events drop column event_data")
    assert extract_table(source, warehouse, "system_events").drift.missing_optional == ["event_data"]
    run_sql(source, "alter table system_events drop column metadata")
    with pytest.raises(ExtractError, match="none of the columns 'event_data', 'metadata'"):
        extract_table(source, warehouse, "system_events")
