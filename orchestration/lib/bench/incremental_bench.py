"""Does an hourly run cost what the new hour costs, whatever the history?

Two DuckDB warehouses hold the same simulated month, its events replicated back in time to a
small and a large history (default 100k and 10M ``system_events``). Each is built once in full;
then the same new hour of events lands in both and the hourly build runs (``build_marts``: dbt
build, template mining, the template marts — what the hourly Dagster job runs after
extraction). The ratio of the two hourly runs is the figure: near 1 means incremental, near
history_large / history_small means a full rebuild. The slowest models of the large run are listed, so a model that scans the
whole history stands out.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from orchestration.lib.bench import write_figures
from orchestration.lib.build import build_marts
from orchestration.lib.db import configure_duckdb
from orchestration.lib.extract.engine import extract_all
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.settings import Location

END = datetime(2026, 8, 1, tzinfo=timezone.utc)
NEW_HOUR = timedelta(hours=1)
REPLICA_SHIFT_DAYS = 30


def _simulated_month(workdir: Path, seed: int) -> Location:
    from orchestration.lib.simulator import simulate

    source = Location.parse(str(workdir / "source.duckdb"))
    simulate(source, days=REPLICA_SHIFT_DAYS, seed=seed, end=END, truth_path=workdir / "truth.json")
    month = Location.parse(str(workdir / "month.duckdb"))
    extract_all(source, month)
    return month


def _build_history(month: Location, target: Path, history_rows: int) -> int:
    """The month's events before the new hour, replicated 30 days further back each copy (new
    ids), until the history holds ``history_rows`` events, each stamped loaded a minute after it
    happened (as hourly extractions would have). Other raw tables are copied as they are."""
    cut = END - NEW_HOUR
    conn = duckdb.connect(str(target))
    try:
        configure_duckdb(conn, target)
        conn.execute("set timezone = 'UTC'")
        conn.execute(f"attach '{month.path}' as month (read_only)")
        conn.execute("create schema raw")
        for table in [*TABLES, *(s.snapshot_table for s in TABLES.values() if s.snapshot_table),
                      "_quarantine", "_extract_state"]:
            conn.execute(f"create table raw.{table} as select * from month.raw.{table}")
        conn.execute("delete from raw.system_events")
        per_copy = conn.execute(
            f"select count(*) from month.raw.system_events where created_at < timestamptz '{cut.isoformat()}'"
        ).fetchall()[0][0]
        copy = 0
        while (remaining := history_rows - copy * per_copy) > 0:
            shift = f"interval '{copy * REPLICA_SHIFT_DAYS} days'"
            conn.execute(f"""
                insert into raw.system_events (id, event_type, event_data, metadata, severity, message, component,
                                               "timestamp", created_at, _loaded_at, _row_hash, _deleted_at)
                select case when {copy} = 0 then id else id || '-' || {copy} end, event_type, event_data, metadata,
                       severity, message, component, "timestamp" - {shift}, created_at - {shift},
                       created_at - {shift} + interval '1 minute', _row_hash, null  -- as if loaded as it came
                from month.raw.system_events where created_at < timestamptz '{cut.isoformat()}'
                order by created_at desc limit {min(remaining, per_copy)}""")
            copy += 1
        return conn.execute("select count(*) from raw.system_events").fetchall()[0][0]
    finally:
        conn.close()


def _land_new_hour(month: Location, target: Path) -> int:
    cut = END - NEW_HOUR
    conn = duckdb.connect(str(target))
    try:
        configure_duckdb(conn, target)
        conn.execute(f"attach '{month.path}' as month (read_only)")
        conn.execute(f"""
            insert into raw.system_events by name
            select * replace (now() as _loaded_at) from month.raw.system_events
            where created_at >= timestamptz '{cut.isoformat()}'""")
        return conn.execute(
            f"select count(*) from raw.system_events where created_at >= timestamptz '{cut.isoformat()}'"
        ).fetchall()[0][0]
    finally:
        conn.close()


def _hourly_pipeline(target: Path, as_of: datetime, target_dir: Path) -> tuple[float, list[tuple[str, float]]]:
    """What the hourly job runs after extraction: dbt build, template mining, the template marts
    (build_marts); its wall time and the slowest dbt nodes."""
    result = build_marts(Location.parse(str(target)), as_of, target_path=target_dir)
    timings = sorted(((uid.split(".")[-1], t) for uid, _, t in result.core.results + result.template_marts.results),
                     key=lambda item: -item[1])
    timings.append(("refresh_templates (python)", result.templates_seconds))
    timings.sort(key=lambda item: -item[1])
    return result.seconds, timings


def run_incremental_bench(small: int, large: int, seed: int, workdir: Path) -> dict:
    month = _simulated_month(workdir, seed)
    figures: dict = {"history_small": small, "history_large": large}
    for label, size in (("small", small), ("large", large)):
        wh = workdir / f"warehouse_{label}.duckdb"
        figures[f"history_{label}_rows"] = _build_history(month, wh, size)
        figures[f"full_build_{label}_s"], _ = _hourly_pipeline(wh, END - NEW_HOUR, workdir / f"target_{label}_full")
        figures["new_hour_rows"] = _land_new_hour(month, wh)
        seconds, timings = _hourly_pipeline(wh, END, workdir / f"target_{label}_hourly")
        figures[f"hourly_run_{label}_s"] = seconds
        figures[f"slowest_nodes_{label}"] = [[name, round(t, 3)] for name, t in timings[:6]]
    figures["ratio_hourly_large_vs_small"] = figures["hourly_run_large_s"] / figures["hourly_run_small_s"]
    figures["ratio_history_large_vs_small"] = figures["history_large_rows"] / figures["history_small_rows"]
    return figures


def print_table(f: dict) -> None:
    print(f"\nincremental benchmark: the same new hour ({f['new_hour_rows']:,} events) on two histories (DuckDB)")
    print(f"{'history':>12s} {'full build s':>13s} {'hourly run s':>13s}")
    for label in ("small", "large"):
        rows, full, hourly = f[f"history_{label}_rows"], f[f"full_build_{label}_s"], f[f"hourly_run_{label}_s"]
        print(f"{rows:>12,} {full:>13.2f} {hourly:>13.2f}")
    print(f"hourly run, large / small history: {f['ratio_hourly_large_vs_small']:.2f}  "
          f"(history ratio {f['ratio_history_large_vs_small']:.0f}; 1.0 = cost of the new hour only)")
    print("slowest nodes of the hourly run on the large history:",
          ", ".join(f"{n} {t:.2f}s" for n, t in f["slowest_nodes_large"]))


def main(small: int, large: int, seed: int, json_path: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="ops-bench-incr-") as tmp:
        figures = run_incremental_bench(small, large, seed, Path(tmp))
    print_table(figures)
    write_figures(json_path, figures)
    return 0
