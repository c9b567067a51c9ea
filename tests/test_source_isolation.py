"""Isolation and configuration: a missing source table fails only its own extract; the decisions
relation is a setting (``content_metadata``, a view in current layouts, a base table in older ones).

The missing-table run goes through the code location's real job and executor (tests/dagster_runs.py),
on a PostgreSQL source into both warehouses.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
from dagster_runs import materialized, run_main_job, step_failures
from source_fidelity import assert_raw_equals_source, run_sql

from orchestration.lib.extract.engine import ExtractError, extract_table
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.settings import Location
from orchestration.lib.simulator import simulate
from orchestration.lib.source.schema import create_source_schema

DECISIONS = "content_generation_metadata_comprehensive"
END = datetime(2026, 10, 15, tzinfo=timezone.utc)


def _all_downstream(asset: str) -> set[str]:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    seen: set[dg.AssetKey] = set()
    todo = [dg.AssetKey(asset.split("/"))]
    while todo:
        key = todo.pop()
        for child in graph.get(key).child_keys:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return {k.to_user_string() for k in seen}


def test_a_missing_decisions_table_fails_only_its_extract_and_the_event_marts_are_built(module_pg_databases,
                                                                                          tmp_path):
    source = Location.parse(module_pg_databases.new("src"))
    simulate(source, days=2, seed=7, end=END, truth_path=tmp_path / "truth.json")
    run_sql(source, f"drop table {DECISIONS} cascade")  # the view content_metadata goes with it
    warehouses = {"duckdb": Location.parse(str(tmp_path / "wh.duckdb")),
                  "postgres": Location.parse(module_pg_databases.new("wh"))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(warehouses, pool.map(lambda wh: run_main_job(source, wh, END.isoformat()),
                                                warehouses.values())))

    reads_decisions = _all_downstream(f"raw/{DECISIONS}") | _all_downstream("raw/decision_snapshots")
    for kind, result in results.items():
        assert not result.success, kind  # the run is marked failed
        failures = step_failures(result)
        assert set(failures) == {f"extract_{DECISIONS}"}, (kind, failures)
        message = failures[f"extract_{DECISIONS}"]
        assert DECISIONS in message and "OPS_SOURCE_TABLE_DECISIONS" in message, message
        done = materialized(result)
        # every other table extracted, the event marts (and everything not reading decisions) built
        assert {f"raw/{t}" for t in TABLES if t != DECISIONS} <= done, kind
        assert {"fct_system_events", "mart_error_frequency", "mart_error_trends_hourly", "mart_error_templates",
                "mart_error_correlation", "mart_job_performance", "mart_template_rank_7d_30d"} <= done, kind
        assert not (done & reads_decisions), (kind, sorted(done & reads_decisions))
        assert_raw_equals_source(source, warehouses[kind], [t for t in TABLES if t != DECISIONS])
        rows = run_sql(warehouses[kind], "select n_errors from marts.mart_error_trends_hourly "
                                         "where dimension = 'total' and n_errors > 0 limit 1")
        assert rows, f"{kind}: the error trends mart is empty"
        state = run_sql(warehouses[kind], f"select last_status, last_error from raw._extract_state "
                                          f"where source_table = '{DECISIONS}'")
        assert state[0][0] == "failed" and "not found" in state[0][1]


# ---------------------------------------------------------------------------------------------
# the decisions relation as a setting


def _decision_rows(n: int, start: datetime) -> list[tuple]:
    return [(f"d-{i}", "single", "queued", json.dumps({"retry_count": 0}), start + timedelta(minutes=i),
             start + timedelta(minutes=i)) for i in range(n)]


def _make_old_layout(loc: Location) -> None:
    """An older database: content_metadata is a base table (no comprehensive table)."""
    run_sql(loc, "drop view if exists content_metadata")
    run_sql(loc, f"create table content_metadata as select * from {DECISIONS} where false")
    run_sql(loc, f"drop table {DECISIONS} cascade")


@pytest.mark.parametrize("layout", ["view", "base_table"])
@pytest.mark.parametrize("warehouse_kind", ["duckdb", "postgres"])
def test_content_metadata_as_the_configured_decisions_relation(layout, warehouse_kind, pg_databases, tmp_path,
                                                               monkeypatch):
    source = Location.parse(pg_databases.new("src"))
    create_source_schema(source)
    run_sql(source, f"create or replace view content_metadata as select * from {DECISIONS}")
    if layout == "base_table":
        _make_old_layout(source)
    warehouse = (Location.parse(pg_databases.new("wh")) if warehouse_kind == "postgres"
                 else Location.parse(str(tmp_path / "wh.duckdb")))
    now = datetime.now(timezone.utc)
    insert_into = "content_metadata" if layout == "base_table" else DECISIONS
    for row in _decision_rows(5, now - timedelta(hours=2)):
        run_sql(source, f"insert into {insert_into} (decision_id, decision_type, status, features, created_at, "
                        "updated_at) values (?, ?, ?, ?, ?, ?)", row)

    # unset: the default name, which this database does not have (or has not as the code uses it)
    if layout == "base_table":
        with pytest.raises(ExtractError, match="OPS_SOURCE_TABLE_DECISIONS"):
            extract_table(source, warehouse, DECISIONS)
    monkeypatch.setenv("OPS_SOURCE_TABLE_DECISIONS", "content_metadata")
    first = extract_table(source, warehouse, DECISIONS)
    assert first.rows_inserted == 5 and first.source_relation.endswith("content_metadata")
    # the bot posts one through the view / old table, without touching updated_at
    run_sql(source, f"update {insert_into} set status = 'posted', tweet_id = '1870000000000000009', "
                    "posted_at = now() where decision_id = 'd-3'")
    second = extract_table(source, warehouse, DECISIONS)
    assert second.rows_updated == 1
    assert_raw_equals_source(source, warehouse, [DECISIONS], relations={DECISIONS: "content_metadata"})
