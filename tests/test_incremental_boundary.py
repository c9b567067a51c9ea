"""The incremental boundary does not depend on how rows were loaded (issue 16).

The extractor's ``_loaded_at`` stamps grow strictly per table, even when the clock steps back,
and dbt's watermark filter is strict, so a bulk first load (every row stamped alike) followed by
an hourly extraction and an incremental run of fct_system_events processes only the new hour.
PostgreSQL raw tables get statistics after a bulk load, and the run records it.

Real engines only: DuckDB files, and PostgreSQL on 127.0.0.1:5432 for the ANALYZE test.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb
import psycopg
from test_extract import insert_events, make_source, make_warehouse, wh_query

from orchestration.lib.build import run_dbt
from orchestration.lib.extract.engine import ExtractRequest, _Stamps, extract_table
from orchestration.lib.settings import Location

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def test_stamps_stay_after_the_previous_newest_stamp_when_the_clock_is_behind_it():
    previous = NOW + timedelta(hours=2)  # the clock stepped back two hours since the last run
    stamps = _Stamps(NOW, previous)
    assert stamps.now == NOW  # bookkeeping (last_run_at) keeps the wall clock
    first, second = stamps.next(), stamps.next()
    assert previous < first < second == stamps.newest
    assert first - previous <= timedelta(milliseconds=1, microseconds=1)
    # a clock ahead of the previous stamp is used as it is
    ahead = _Stamps(NOW, NOW - timedelta(seconds=5))
    assert ahead.base == NOW and ahead.next() == NOW + timedelta(microseconds=1)
    assert _Stamps(NOW).base == NOW  # a table never stamped


def test_extract_stamps_after_the_tables_newest_stamp_even_with_the_clock_behind(tmp_path):
    source = make_source("duckdb", None, tmp_path)
    warehouse = make_warehouse("duckdb", None, tmp_path)
    insert_events(source, 3, start=NOW - timedelta(minutes=30))
    first = extract_table(source, warehouse, "system_events")
    assert first.loaded_through is not None
    # as if the previous run's clock had been two hours ahead of this one's
    future = first.loaded_through + timedelta(hours=2)
    con = duckdb.connect(str(warehouse.path))
    con.execute("update raw._extract_state set loaded_through = ? where source_table = 'system_events'", [future])
    con.close()
    insert_events(source, 1, start=NOW - timedelta(minutes=1), event_type="NEW_ONE")
    second = extract_table(source, warehouse, "system_events")
    (stamp,), = wh_query(warehouse, "select _loaded_at from raw.system_events where event_type = 'NEW_ONE'")
    assert stamp > future
    assert second.loaded_through >= stamp
    (recorded,), = wh_query(warehouse, "select loaded_through from raw._extract_state "
                                       "where source_table = 'system_events'")
    assert recorded == second.loaded_through


def test_hourly_run_after_a_bulk_first_load_processes_only_the_new_hour(tmp_path):
    """DuckDB: 3,000 events in one first load (one _loaded_at), a full build of fct_system_events;
    then a new hour of 40 events is extracted and the incremental run must leave the bulk-loaded
    rows alone (with a lookback around the one bulk stamp it re-merged all of them)."""
    source = make_source("duckdb", None, tmp_path)
    warehouse = make_warehouse("duckdb", None, tmp_path)
    bulk, new = 3000, 40
    insert_events(source, bulk, start=NOW - timedelta(hours=1, seconds=1), step_seconds=10)
    assert extract_table(source, warehouse, "system_events").first_load
    assert wh_query(warehouse, "select count(distinct _loaded_at) from raw.system_events") == [(1,)]

    args = ["run", "--select", "stg_ops__system_events", "fct_system_events",
            "--vars", json.dumps({"as_of": NOW.isoformat()})]
    target = tmp_path / "dbt"
    run_dbt(warehouse, args, target_path=target, timeout=600)
    # mark every bulk-loaded row in the built table: a re-merge would overwrite the mark
    con = duckdb.connect(str(warehouse.path))
    con.execute("update marts.fct_system_events set message = 'untouched'")
    con.close()

    insert_events(source, new, start=NOW - timedelta(seconds=1), step_seconds=60, event_type="NEW_HOUR")
    hourly = extract_table(source, warehouse, "system_events")
    assert hourly.rows_inserted == new and not hourly.first_load
    run = run_dbt(warehouse, args, target_path=target, timeout=600)
    assert all(status == "success" for _, status, _ in run.results)

    counts = dict(wh_query(warehouse, "select message = 'untouched', count(*) from marts.fct_system_events "
                                      "group by 1"))
    assert counts == {True: bulk, False: new}
    assert wh_query(warehouse, "select count(*) from marts.fct_system_events where event_type = 'NEW_HOUR' "
                               "and message <> 'untouched'") == [(new,)]
    # dbt's own count: the incremental merge inserted the new hour only
    results = json.loads((target / "run_results.json").read_text())["results"]
    fct = next(r for r in results if r["unique_id"].endswith(".fct_system_events"))
    affected = fct.get("adapter_response", {}).get("rows_affected")
    if affected is not None and affected >= 0:
        assert affected == new


def test_postgres_raw_table_is_analyzed_after_a_first_load_not_after_a_small_read(pg_databases, tmp_path):
    source = make_source("duckdb", None, tmp_path)
    warehouse = Location.parse(pg_databases.new("wh"))
    insert_events(source, 500, start=NOW - timedelta(minutes=30))
    first = extract_table(source, warehouse, "system_events")
    assert first.first_load and first.analyzed
    with psycopg.connect(warehouse.dsn) as conn:
        # pg_stats rows exist only once ANALYZE ran (nothing else runs it: autovacuum waits a minute)
        assert conn.execute("select count(*) > 0 from pg_stats where schemaname = 'raw' "
                            "and tablename = 'system_events'").fetchone() == (True,)
        analyzed_at = conn.execute("select last_analyzed_at from raw._extract_state "
                                   "where source_table = 'system_events'").fetchone()[0]
    assert analyzed_at is not None
    insert_events(source, 3, start=NOW - timedelta(minutes=1), event_type="SMALL")
    again = extract_table(source, warehouse, "system_events", ExtractRequest(reconcile=False))
    assert again.rows_inserted == 3 and not again.analyzed  # 3 rows of 503: under 10 %
    with psycopg.connect(warehouse.dsn) as conn:
        assert conn.execute("select last_analyzed_at from raw._extract_state "
                            "where source_table = 'system_events'").fetchone()[0] == analyzed_at


def test_bench_history_is_one_bulk_load_of_the_replicated_month(pg_databases, tmp_path):
    """bench incremental's history builder: exactly N events, unique ids, before the new hour, at
    the density asked (dense copies stay within the month's span), landed by one first load."""
    from orchestration.lib.bench.incremental_bench import CUT, END, replicate_history, replicate_new_hour

    source = make_source("postgres", pg_databases, tmp_path)
    insert_events(source, 200, start=CUT - timedelta(minutes=30), step_seconds=3600)  # a 200-hour "month"
    insert_events(source, 4, start=END - timedelta(minutes=5), step_seconds=600, event_type="NEW_HOUR")
    with psycopg.connect(source.dsn, autocommit=True) as conn:
        conn.execute("create table bench_month_events as select * from system_events where created_at < %s", (CUT,))
        conn.execute("create table bench_new_hour as select * from system_events where created_at >= %s", (CUT,))
        assert replicate_history(conn, 500, copies=1) == 500  # 2.5 copies of the month, back in time
        span, ids = conn.execute("select max(created_at) - min(created_at), count(distinct id) "
                                 "from system_events").fetchone()
        assert ids == 500 and span > timedelta(hours=400)
        assert replicate_history(conn, 3000, copies=25) == 3000  # 25 copies in the same 200 hours
        span, ids, newest = conn.execute("select max(created_at) - min(created_at), count(distinct id), "
                                         "max(created_at) from system_events").fetchone()
        assert ids == 3000 and span < timedelta(hours=200) and newest < CUT
        conn.execute("insert into system_events select * from bench_new_hour")
        assert replicate_new_hour(conn, copies=25) == 4 * 25
    warehouse = make_warehouse("duckdb", None, tmp_path)
    extract_table(source, warehouse, "system_events")
    assert wh_query(warehouse, "select count(*), count(distinct _loaded_at) from raw.system_events") == [(3100, 1)]


def test_timestamp_bounds_are_written_to_the_microsecond(tmp_path):
    """The incremental models write their watermarks into the query as literals
    (macros/time.sql ops_timestamp_bound). A bulk load stamps every row alike, so a watermark
    compared with `>` must keep its microseconds: floored to the second, it took every row of the
    bulk load for new (int_template_hour_counts then rebuilt the whole history at 10M events)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from orchestration.lib.dbt_env import dbt_env, dbt_target
    from orchestration.lib.settings import DBT_PROJECT_DIR

    warehouse = make_warehouse("duckdb", None, tmp_path)
    inline = ("select {{ ops_timestamp_bound(\"(select cast('2026-07-31 23:00:01.123456+00:00' as timestamptz))\") }} "
              "as bound")
    env = {**os.environ, **dbt_env(warehouse), "DBT_TARGET_PATH": str(tmp_path / "target"),
           "DBT_LOG_PATH": str(tmp_path / "logs")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "compile", "--inline", inline, "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target", dbt_target(warehouse), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2026-07-31T23:00:01.123456+00:00" in proc.stdout, proc.stdout[-2000:]
