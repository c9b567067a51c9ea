"""No poison row can stop a build, and no absurd timestamp can grow a model.

- A ``json`` (not ``jsonb``) payload holding ``\\u0000`` (PostgreSQL's jsonb refuses it: every
  ``dbt build`` used to fail on it, even after the row was deleted in the source) is quarantined
  on the way in, on both warehouses; dbt builds; deleting it in the source resolves the entry.
- ``infinity``, ``-infinity`` and 1970 timestamps are quarantined with their reason, in any
  timestamp column; the cursor and the hour spine never move to them.
- A key duplicated by a source view quarantines every copy; the other rows land.

A PostgreSQL source into both warehouses.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from source_fidelity import assert_raw_equals_source, new_locations, run_sql

from orchestration.lib.build import run_dbt
from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.extract.source import SourceRelation
from orchestration.lib.settings import Location
from orchestration.lib.source.schema import create_source_schema

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DECISIONS = "content_generation_metadata_comprehensive"
POISON = '{"error": "bad byte \\u0000 in the response", "decision_id": "d-9"}'


@pytest.fixture(params=["duckdb", "postgres"])
def locations(request, pg_databases, tmp_path):
    source, warehouse = new_locations(request.param, pg_databases, tmp_path)
    run_sql(source, "insert into system_events (event_type, event_data, severity, created_at) "
                    "select 'tick', jsonb_build_object('n', i), 'info', ? - i * interval '10 minutes' "
                    "from generate_series(0, 29) i", (NOW,))
    return source, warehouse


def build(warehouse: Location, tmp_path, select: str) -> None:
    run_dbt(warehouse, ["build", "--select", select, "--vars", json.dumps({"as_of": NOW.isoformat()})],
            target_path=tmp_path / f"dbt-{select.strip('+')}", timeout=600)


def test_a_json_payload_jsonb_refuses_is_quarantined_and_the_build_goes_on(locations, tmp_path):
    source, warehouse = locations
    # an environment whose payload column is json: it keeps text jsonb cannot hold
    run_sql(source, "alter table system_events alter column metadata type json")
    run_sql(source, "insert into system_events (event_type, metadata, severity, created_at) "
                    "values ('POST_FAILED', ?::json, 'error', ?)", (POISON, NOW - timedelta(minutes=3)))
    with pytest.raises(Exception, match="Unicode"):
        run_sql(source, "select metadata::jsonb from system_events where metadata is not null")

    result = extract_table(source, warehouse, "system_events")
    assert result.quarantined_by_reason == {"invalid_json_metadata": 1}
    assert result.rows_inserted == 30
    assert_raw_equals_source(source, warehouse, ["system_events"])
    build(warehouse, tmp_path, "+fct_system_events")  # used to fail: unsupported Unicode escape sequence
    assert run_sql(warehouse, "select count(*) from marts.fct_system_events") == [(30,)]

    # deleted in the source: the entry is resolved, nothing is left that could poison a build
    run_sql(source, "delete from system_events where metadata is not null")
    gone = extract_table(source, warehouse, "system_events")
    assert gone.quarantine_open == 0
    assert run_sql(warehouse, "select reason, resolution from raw._quarantine") == [("invalid_json_metadata", "gone")]


def test_infinite_and_ancient_timestamps_are_quarantined_with_their_reason(locations, tmp_path):
    source, warehouse = locations
    run_sql(source, "insert into system_events (event_type, severity, message, created_at) values "
                    "('clock', 'info', 'plus', 'infinity'), ('clock', 'info', 'minus', '-infinity'), "
                    "('clock', 'info', 'epoch', '1970-01-01T00:00:00Z')")
    run_sql(source, "insert into system_events (event_type, severity, message, created_at, \"timestamp\") "
                    "values ('clock', 'info', 'bad second column', ?, 'infinity')", (NOW - timedelta(minutes=1),))
    run_sql(source, f"insert into {DECISIONS} (decision_id, status, scheduled_at, created_at, updated_at) values "
                    "('ok', 'queued', ?, ?, ?), ('never', 'queued', 'infinity', ?, ?)",
            (NOW, NOW - timedelta(hours=1), NOW - timedelta(hours=1), NOW - timedelta(hours=1),
             NOW - timedelta(hours=1)))

    events = extract_table(source, warehouse, "system_events")
    assert events.quarantined_by_reason == {"infinite_created_at": 2, "before_floor_created_at": 1,
                                            "infinite_timestamp": 1}
    assert events.cursor_after <= NOW + timedelta(seconds=1)  # never moved to infinity
    decisions = extract_table(source, warehouse, DECISIONS)
    assert decisions.quarantined_by_reason == {"infinite_scheduled_at": 1} and decisions.rows_inserted == 1
    assert_raw_equals_source(source, warehouse, ["system_events", DECISIONS])
    # each entry carries its reconcile day: day 0 is 1970-01-01
    entries = run_sql(warehouse, "select reason, partition_key from raw._quarantine "
                                 "where source_table = 'system_events' and reason <> 'infinite_timestamp'")
    assert sorted(entries) == [("before_floor_created_at", "0"), ("infinite_created_at", "-infinity"),
                               ("infinite_created_at", "infinity")]
    # a second run quarantines nothing new; a reconcile finds every day in agreement
    again = extract_table(source, warehouse, "system_events")
    assert again.rows_newly_quarantined == 0 and not again.unresolved
    full = extract_table(source, warehouse, "system_events", ExtractRequest(reconcile=True))
    assert full.reconciles[0].differing == [] and full.reconciles[0].buckets_compared >= 3

    # the spine starts at the first good event's hour, not in 1970
    build(warehouse, tmp_path, "+int_hour_spine")
    (start, hours), = run_sql(warehouse, "select min(hour_start), count(*) from intermediate.int_hour_spine")
    assert start.astimezone(timezone.utc) == (NOW - timedelta(minutes=290)).replace(minute=0, second=0)
    assert hours <= 7


def test_a_key_duplicated_by_a_source_view_quarantines_every_copy(pg_databases, tmp_path):
    source = Location.parse(pg_databases.new("src"))
    create_source_schema(source)
    warehouse = Location.parse(str(tmp_path / "wh.duckdb"))
    run_sql(source, "insert into posting_attempts (decision_id, status, created_at) "
                    "select 'd-' || i, 'success', now() - i * interval '1 minute' from generate_series(0, 4) i")
    run_sql(source, "create view attempts_joined as select a.* from posting_attempts a "
                    "union all select a.* from posting_attempts a where a.decision_id = 'd-2'")
    relation = SourceRelation.for_spec(TABLES["posting_attempts"], name="attempts_joined")
    result = extract_table(source, warehouse, "posting_attempts", relation=relation)
    assert result.quarantined_by_reason == {"duplicate_id": 2} and result.rows_inserted == 4
    assert run_sql(warehouse, "select count(distinct row_key), count(*) from raw._quarantine") == [(1, 1)]


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_duplicated_key_on_a_first_load(kind, pg_databases, tmp_path):
    """The first load of an empty raw table lands straight in it: duplicated keys are found there
    too (on PostgreSQL by the primary key's build), every copy quarantined, snapshots once."""
    source, warehouse = new_locations(kind, pg_databases, tmp_path)
    run_sql(source, f"insert into {DECISIONS} (decision_id, status, created_at, updated_at) "
                    "select 'd-' || i, 'queued', now() - i * interval '1 minute', now() - i * interval '1 minute' "
                    "from generate_series(0, 4) i")
    run_sql(source, f"create view decisions_joined as select * from {DECISIONS} "
                    f"union all select * from {DECISIONS} where decision_id = 'd-2'")
    relation = SourceRelation.for_spec(TABLES[DECISIONS], name="decisions_joined")
    result = extract_table(source, warehouse, DECISIONS, relation=relation)
    assert result.first_load and result.quarantined_by_reason == {"duplicate_decision_id": 2}
    assert result.rows_inserted == 4 and result.snapshots_added == 4
    assert run_sql(warehouse, f"select count(*), count(distinct decision_id) from raw.{DECISIONS}") == [(4, 4)]
