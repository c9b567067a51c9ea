"""The shutdown cause marts cost the new data only: mart_shutdown_causes and
mart_checklist_shutdown_causes sum small incremental tables (int_shutdown_episode_causes,
int_shutdown_cause_days, int_checklist_shutdown_days). A DuckDB warehouse loaded and built in two
steps (the second with late-committed events and events deleted days before) holds
the same marts (every column) as the same warehouse rebuilt with --full-refresh at the same as_of.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from dbquery import normalised_rows, query_location, run_dbt_duckdb

from orchestration.lib.settings import Location

END = datetime(2026, 6, 4, tzinfo=timezone.utc)
DAYS, SEED = 4, 23  # seed 23 also injects late-committed and guard-deleted events in these days
MARTS = ("mart_shutdown_causes", "mart_checklist_shutdown_causes")
NEW_MODELS = ("int_shutdown_episode_causes", "int_shutdown_cause_days", "int_checklist_shutdown_days", *MARTS)
SELECT = ["--select", "+mart_shutdown_causes", "+mart_checklist_shutdown_causes",
          "--exclude", "tag:after_templates"]
# table -> columns compared (the watermark column source_loaded_through legitimately differs:
# a full build stamps every day with the newest load, an incremental one each day with its own)
TABLES = {
    "marts.mart_shutdown_causes": "*",
    "marts.mart_checklist_shutdown_causes": "*",
    "marts.mart_shutdown_episodes": "*",
    "intermediate.int_shutdown_episode_causes": "*",
    "intermediate.int_shutdown_cause_days": "* exclude (source_loaded_through)",
    "intermediate.int_checklist_shutdown_days": "* exclude (source_loaded_through)",
}


def _dbt(command: str, warehouse: Location, as_of: datetime, work, *extra: str) -> None:
    run_dbt_duckdb([command, *SELECT, *extra, "--vars", json.dumps({"as_of": as_of.isoformat()})],
                   warehouse.path, work)


def _snapshot(warehouse: Location) -> dict[str, list[tuple]]:
    return {table: normalised_rows(query_location(warehouse, f"select {columns} from {table}"))
            for table, columns in TABLES.items()}


def _delete_source_events(source: Location, before: datetime) -> int:
    """Delete some checklist / cause events of the first day in the source (errors, critical
    events, queue gates): the next extract marks them deleted in the warehouse."""
    import duckdb

    conn = duckdb.connect(str(source.path))
    try:
        ids = [r[0] for r in conn.execute(
            """select id from system_events
               where created_at < ? and (lower(coalesce(severity, '')) in ('critical', 'error')
                                         or lower(event_type) like '%block%')
               order by created_at limit 12""", [before]).fetchall()]
        conn.execute(f"delete from system_events where id in ({', '.join('?' * len(ids))})", ids)
        return len(ids)
    finally:
        conn.close()


def test_shutdown_cause_marts_incremental_equal_full_refresh(tmp_path, monkeypatch):
    from orchestration.lib.extract.engine import extract_all
    from orchestration.lib.simulator import simulate

    # every extract re-reads the whole source, so deletions on the first day (older than the
    # shutdown rebuild horizon) are seen: only the watermark can get their day rebuilt
    monkeypatch.setenv("OPS_EXTRACT_OVERLAP_MINUTES", str(DAYS * 24 * 60))
    source = Location.parse(str(tmp_path / "source.duckdb"))
    warehouse = Location.parse(str(tmp_path / "warehouse.duckdb"))
    work = tmp_path / "dbt"  # one target dir: partial parsing is reused between the runs
    start = END - timedelta(days=DAYS)
    # a full build at 10:00 on the third day, then a step of 15 hours (with deletions on the first
    # day, loaded with the step), each at the end of the data loaded
    cuts = [start + timedelta(days=2, hours=10), start + timedelta(days=3, hours=1)]
    lo = start
    for i, cut in enumerate(cuts):
        simulate(source, days=DAYS, seed=SEED, end=END, write_from=lo, write_to=cut, reset=(i == 0),
                 truth_path=tmp_path / "truth.json")
        if i > 0:
            assert _delete_source_events(source, start + timedelta(days=1)) > 0
        extract_all(source, warehouse)
        lo = cut
        if i == 0:
            _dbt("build", warehouse, cut, work, "--resource-type", "seed", "--resource-type", "model")
        else:
            _dbt("run", warehouse, cut, work)
    as_of = cuts[-1]
    # once more with nothing new, with the unit and data tests of the new models
    run_dbt_duckdb(["build", "--select", *NEW_MODELS, "--vars", json.dumps({"as_of": as_of.isoformat()})],
                   warehouse.path, work)

    n_loads, n_deleted = query_location(
        warehouse, "select count(distinct _loaded_at), count(case when is_deleted then 1 end) "
                   "from marts.fct_system_events")[0]
    assert n_loads > 1 and n_deleted > 0, "the scenario should load in steps and delete events"
    incremental = _snapshot(warehouse)
    for mart in MARTS:
        assert incremental[f"marts.{mart}"], f"{mart} is empty"
    n_days = query_location(warehouse, "select count(distinct day_start_at) from intermediate.int_checklist_shutdown_days")[0][0]
    assert n_days >= 3

    _dbt("run", warehouse, as_of, work, "--full-refresh")
    full = _snapshot(warehouse)
    for table in TABLES:
        assert incremental[table] == full[table], f"{table}: incremental and full builds differ"
