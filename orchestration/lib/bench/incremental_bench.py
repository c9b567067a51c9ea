"""Does an hourly run cost what the new hour costs, whatever the history? On either warehouse.

As in production: a PostgreSQL source holds the history, the warehouse (DuckDB or PostgreSQL) gets
it in ONE bulk first load (every row stamped alike, as a first extraction does) and is built in
full; then a new hour lands in the source and the hourly run follows — the extraction of the new
hour (``extract_all``, hot window included) and ``build_marts`` (dbt build, template mining, the
template marts: what the hourly Dagster job runs). This is done on a small and a large history
(default 100k and 10M ``system_events``); the ratio of the two hourly runs is the figure: near 1
means incremental, near history_large / history_small means a full rebuild.

The history is one simulated month (its other tables as simulated: decisions, attempts, runs and
heartbeats cover that month) whose events before the new hour are replicated inside PostgreSQL
(insert-select, new ids), at one of two densities:

- ``real``:  the bot's rate; copies of the month shifted 30 days further back each, newest first,
             until the history holds N events (10M ≈ three and a half years at scale 1);
- ``dense``: DENSE_COPIES (25) times the bot's rate: each month holds 25 copies of its events, copy
             k shifted by k · DENSE_OFFSET (small, so copies interleave within the hour); the new
             hour is replicated the same way, so the hourly run carries 25 hours' worth of events.

Printed per warehouse and density: first load and full build seconds, the hourly run (extract
and build), the ratios hourly(large)/hourly(small) and hourly(large)/full(large), the five slowest
steps of the large hourly run, and peak RSS of this process and of its children (dbt runs as a
subprocess). Client and servers share this machine's cores: treat figures as relative.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from orchestration.lib import settings
from orchestration.lib.bench import write_figures
from orchestration.lib.build import build_marts
from orchestration.lib.extract.engine import extract_all
from orchestration.lib.settings import Location

END = datetime(2026, 8, 1, tzinfo=timezone.utc)
NEW_HOUR = timedelta(hours=1)
CUT = END - NEW_HOUR
MONTH_DAYS = 30
DENSE_COPIES = 25
DENSE_OFFSET = timedelta(seconds=37)  # copy k of an event: k · 37 s later (at most ~15 min)
DENSITIES = {"real": 1, "dense": DENSE_COPIES}
WAREHOUSES = ("duckdb", "postgres")
EVENT_COLUMNS = 'event_type, event_data, metadata, severity, message, component, "timestamp", created_at'


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


def _copy_id(period: str, copy: str) -> str:
    """The original id for copy (0, 0), a new uuid derived from it otherwise."""
    return (f"case when {period} = 0 and {copy} = 0 then m.id "
            f"else md5(m.id::text || ':' || {period} || ':' || {copy})::uuid end")


def replicate_history(conn, history_rows: int, copies: int) -> int:
    """Fill the source's ``system_events`` with the newest ``history_rows`` events before CUT of
    the replicated month (``bench_month_events``): period p shifts a copy 30 days back, copy k of
    a period k · DENSE_OFFSET forward (``copies`` per period). One insert-select per period, inside
    PostgreSQL. Returns the events written."""
    conn.execute("truncate system_events")
    offset_s = DENSE_OFFSET.total_seconds()
    per_period = conn.execute(
        f"select count(*) from bench_month_events m cross join generate_series(0, {copies - 1}) k "
        f"where m.created_at + k * interval '{offset_s} seconds' < %s", (CUT,)).fetchone()[0]
    if per_period == 0:
        raise RuntimeError("the simulated month holds no events before the new hour")
    written, period = 0, 0
    while written < history_rows:
        remaining = history_rows - written
        shift = f"(interval '{MONTH_DAYS} days' * {period} - k * interval '{offset_s} seconds')"
        since = "" if remaining >= per_period else _newest_since(conn, remaining, per_period, copies)
        limit = "" if remaining >= per_period else f"order by m.created_at - {shift} desc limit {remaining}"
        conn.execute(f"""
            insert into system_events (id, {EVENT_COLUMNS})
            select {_copy_id(str(period), 'k')}, m.event_type, m.event_data, m.metadata, m.severity, m.message,
                   m.component, m."timestamp" - {shift}, m.created_at - {shift}
            from bench_month_events m cross join generate_series(0, {copies - 1}) k
            where m.created_at + k * interval '{offset_s} seconds' < %s {since}
            {limit}""", (CUT,))
        written += min(remaining, per_period)
        period += 1
    conn.execute("analyze system_events")
    return conn.execute("select count(*) from system_events").fetchone()[0]


def _newest_since(conn, needed: int, per_period: int, copies: int) -> str:
    """A filter on the month's newest events holding at least ``needed`` rows of a period's
    copies, so a partial period sorts those rather than all of its rows (a window from the share
    needed, doubled until it holds enough)."""
    offset_s = DENSE_OFFSET.total_seconds()
    # the month's span, not min(created_at): the bot's bad rows include 1970 timestamps
    span = MONTH_DAYS * 86400.0
    newest = conn.execute("select max(created_at) from bench_month_events where created_at < %s",
                          (CUT,)).fetchone()[0]
    window = span * min(1.0, 2.0 * needed / per_period) + copies * offset_s
    while True:
        since = newest - timedelta(seconds=window)
        found = conn.execute(
            f"select count(*) from bench_month_events m cross join generate_series(0, {copies - 1}) k "
            f"where m.created_at >= %s and m.created_at + k * interval '{offset_s} seconds' < %s",
            (since, CUT)).fetchone()[0]
        if found >= needed or window >= span:
            return "" if window >= span else f"and m.created_at >= timestamptz '{since.isoformat()}'"
        window *= 2


def replicate_new_hour(conn, copies: int) -> int:
    """Dense: copies 1 … copies-1 of the events the simulator wrote for the new hour (created in
    it), shifted like the history's copies. Returns the events of the new hour in the source."""
    if copies > 1:
        offset_s = DENSE_OFFSET.total_seconds()
        conn.execute(f"""
            insert into system_events (id, {EVENT_COLUMNS})
            select {_copy_id('0', 'k')}, m.event_type, m.event_data, m.metadata, m.severity, m.message,
                   m.component, m."timestamp" + k * interval '{offset_s} seconds',
                   m.created_at + k * interval '{offset_s} seconds'
            from system_events m cross join generate_series(1, {copies - 1}) k
            where m.created_at >= %s and m.created_at < %s""", (CUT, END))
    return conn.execute("select count(*) from system_events where created_at >= %s", (CUT,)).fetchone()[0]


def _build(warehouse: Location, as_of: datetime, target_dir: Path) -> tuple[float, list[tuple[str, float]]]:
    """build_marts: its wall time and its steps (dbt nodes, the miner) slowest first."""
    result = build_marts(warehouse, as_of, target_path=target_dir)
    timings = [(_node_name(uid), t) for uid, _, t in result.core.results + result.template_marts.results]
    timings.append(("refresh_templates (python)", result.templates_seconds))
    return result.seconds, sorted(timings, key=lambda item: -item[1])


def _node_name(unique_id: str) -> str:
    """model.ops_warehouse.fct_system_events -> fct_system_events; a data test keeps its name,
    not its hash (test.ops_warehouse.not_null_x_y.3f2a…), prefixed test:."""
    parts = unique_id.split(".")
    if parts[0] == "test" and len(parts) > 2:
        return f"test:{parts[2]}"
    return parts[-1] if parts[0] != "unit_test" else f"unit_test:{parts[-1]}"


def _peak_rss_mb() -> dict[str, float]:
    """Peak resident set so far (Linux: ru_maxrss in KiB), of this process and of its largest
    finished child (dbt). Linux carries a child's RSS at fork into its peak, so the children's
    figure is at least this process's size when it started dbt: an upper bound for dbt alone."""
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


class _Scratch:
    """PostgreSQL scratch databases, all dropped at the end."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.admin = psycopg.connect(admin_dsn, autocommit=True)
        self.names: list[str] = []

    def create(self, label: str, template: str | None = None) -> Location:
        name = f"ops_bench_inc_{label}_{uuid.uuid4().hex[:8]}"
        self.admin.execute(f"create database {name}" + (f" template {template}" if template else ""))
        self.names.append(name)
        return Location.parse(_dsn_for(self.admin_dsn, name))

    def drop(self, location: Location) -> None:
        name = location.dsn.rsplit("/", 1)[-1]
        self.admin.execute(f"drop database if exists {name} with (force)")
        if name in self.names:
            self.names.remove(name)

    def close(self) -> None:
        for name in self.names:
            self.admin.execute(f"drop database if exists {name} with (force)")
        self.admin.close()


def _simulated_month(scratch: _Scratch, seed: int, workdir: Path) -> tuple[Location, int]:
    """A source database with the simulated month before the new hour, its events also kept in
    ``bench_month_events``: the template every history is made from."""
    from orchestration.lib.simulator import simulate

    month = scratch.create("month")
    simulate(month, days=MONTH_DAYS, seed=seed, end=END, write_to=CUT, truth_path=workdir / "truth.json")
    with psycopg.connect(month.dsn, autocommit=True) as conn:
        conn.execute("create table bench_month_events as select * from system_events")
        events = conn.execute("select count(*) from bench_month_events").fetchone()[0]
    return month, events


def _warehouse(kind: str, scratch: _Scratch, label: str, workdir: Path) -> Location:
    if kind == "postgres":
        return scratch.create(f"wh_{label}")
    return Location.parse(str(workdir / f"warehouse_{label}.duckdb"))


def _drop_warehouse(warehouse: Location, scratch: _Scratch) -> None:
    if warehouse.is_postgres:
        scratch.drop(warehouse)
    else:
        for path in (warehouse.path, Path(f"{warehouse.path}.wal")):
            Path(path).unlink(missing_ok=True)


def run_density(scratch: _Scratch, month: Location, density: str, kinds: list[str], small: int, large: int,
                seed: int, workdir: Path) -> dict[str, dict]:
    """Both history sizes at one density, on each warehouse kind: figures per kind."""
    from orchestration.lib.simulator import simulate

    copies = DENSITIES[density]
    month_name = month.dsn.rsplit("/", 1)[-1]
    figures: dict[str, dict] = {kind: {"density": density, "copies_per_month": copies} for kind in kinds}
    for label, size in (("small", small), ("large", large)):
        source = scratch.create(f"src_{density}_{label}", template=month_name)
        with psycopg.connect(source.dsn, autocommit=True) as conn:
            started = time.perf_counter()
            rows = replicate_history(conn, size, copies)
            history_s = time.perf_counter() - started
            # the simulated absurd timestamps (1970, …) are quarantined, not history
            oldest = conn.execute("select min(created_at) from system_events where created_at >= %s",
                                  (settings.time_floor(),)).fetchone()[0]
        warehouses = {kind: _warehouse(kind, scratch, f"{density}_{label}", workdir) for kind in kinds}
        for kind, wh in warehouses.items():
            f = figures[kind]
            f[f"history_{label}_rows"] = rows
            f[f"history_{label}_days"] = round((CUT - oldest).total_seconds() / 86400, 1)
            f[f"history_{label}_replicate_s"] = history_s
            started = time.perf_counter()
            loads = extract_all(source, wh)
            f[f"first_load_{label}_s"] = time.perf_counter() - started
            f[f"first_load_{label}_analyzed"] = sorted(r.table for r in loads if r.analyzed)
            if wh.is_postgres:
                f[f"first_load_{label}_distinct_loaded_at"] = _distinct_stamps(wh)
            f[f"full_build_{label}_s"], _ = _build(wh, CUT, workdir / f"target_{kind}_{density}_{label}_full")
        # the new hour, as the bot writes it (late commits, deletions, status changes included)
        simulate(source, days=MONTH_DAYS, seed=seed, end=END, write_from=CUT, write_to=END, reset=False,
                 truth_path=workdir / "truth_hour.json")
        with psycopg.connect(source.dsn, autocommit=True) as conn:
            new_hour = replicate_new_hour(conn, copies)
        for kind, wh in warehouses.items():
            f = figures[kind]
            f["new_hour_rows"] = new_hour
            started = time.perf_counter()
            hourly = extract_all(source, wh)
            extract_s = time.perf_counter() - started
            build_s, timings = _build(wh, END, workdir / f"target_{kind}_{density}_{label}_hourly")
            timings = sorted([*timings, ("extract_all (python)", extract_s)], key=lambda item: -item[1])
            f[f"hourly_extract_{label}_s"] = extract_s
            f[f"hourly_build_{label}_s"] = build_s
            f[f"hourly_run_{label}_s"] = extract_s + build_s
            f[f"hourly_{label}_rows_inserted"] = sum(r.rows_inserted for r in hourly)
            f[f"slowest_nodes_{label}"] = [[name, round(t, 3)] for name, t in timings[:5]]
            # every step, to see where a ratio comes from (node times sum to less than the build:
            # dbt's parse and scheduling are the rest)
            f[f"hourly_steps_{label}"] = [[name, round(t, 3)] for name, t in timings]
            f[f"hourly_steps_{label}_sum_s"] = round(sum(t for _, t in timings), 3)
            _drop_warehouse(wh, scratch)
        scratch.drop(source)
    for f in figures.values():
        f["ratio_hourly_large_vs_small"] = f["hourly_run_large_s"] / f["hourly_run_small_s"]
        f["ratio_hourly_vs_full_large"] = f["hourly_run_large_s"] / f["full_build_large_s"]
        f["ratio_history_large_vs_small"] = f["history_large_rows"] / f["history_small_rows"]
    return figures


def _distinct_stamps(wh: Location) -> int:
    with psycopg.connect(wh.dsn) as conn:
        return conn.execute("select count(distinct _loaded_at) from raw.system_events").fetchone()[0]


def run_incremental_bench(kinds: list[str], densities: list[str], small: int, large: int, seed: int,
                          admin_dsn: str, workdir: Path) -> dict:
    scratch = _Scratch(admin_dsn)
    try:
        started = time.perf_counter()
        month, month_events = _simulated_month(scratch, seed, workdir)
        figures: dict = {"history_small": small, "history_large": large, "seed": seed,
                         "month_events": month_events, "simulate_month_s": time.perf_counter() - started,
                         "runs": {}}
        for density in densities:
            for kind, f in run_density(scratch, month, density, kinds, small, large, seed, workdir).items():
                figures["runs"][f"{kind}/{density}"] = f
        rss = _peak_rss_mb()
        figures["peak_rss_self_mb"], figures["peak_rss_children_mb"] = rss["self"], rss["children"]
        return figures
    finally:
        scratch.close()


def print_table(figures: dict) -> None:
    print(f"\nincremental benchmark: one bulk first load of the history, a full build, then the hourly run "
          f"(extract of the new hour + build_marts); PostgreSQL source, month of {figures['month_events']:,} events")
    print(f"{'warehouse/density':>18s} {'history':>11s} {'days':>7s} {'new hour':>9s} {'first load s':>13s} "
          f"{'full build s':>13s} {'hourly s':>9s} {'(extract':>9s} {'build)':>8s}")
    for name, f in figures["runs"].items():
        for label in ("small", "large"):
            print(f"{name:>18s} {f[f'history_{label}_rows']:>11,} {f[f'history_{label}_days']:>7.1f} "
                  f"{f['new_hour_rows']:>9,} {f[f'first_load_{label}_s']:>13.2f} {f[f'full_build_{label}_s']:>13.2f} "
                  f"{f[f'hourly_run_{label}_s']:>9.2f} {f[f'hourly_extract_{label}_s']:>9.2f} "
                  f"{f[f'hourly_build_{label}_s']:>8.2f}")
    for name, f in figures["runs"].items():
        print(f"{name}: hourly large / small {f['ratio_hourly_large_vs_small']:.2f} "
              f"(history ratio {f['ratio_history_large_vs_small']:.0f}; 1.0 = cost of the new hour only), "
              f"hourly / full build (large) {f['ratio_hourly_vs_full_large']:.2f}")
        print("   slowest steps of the large hourly run: "
              + ", ".join(f"{n} {t:.2f}s" for n, t in f["slowest_nodes_large"]))
    print(f"peak RSS: this process {figures['peak_rss_self_mb']:.0f} MB, largest child (dbt) "
          f"{figures['peak_rss_children_mb']:.0f} MB")


def main(kinds: list[str], densities: list[str], small: int, large: int, seed: int, json_path: str | None,
         admin_dsn: str | None) -> int:
    for kind in kinds:
        if kind not in WAREHOUSES:
            raise SystemExit(f"--warehouse: {kind!r} is not one of {', '.join(WAREHOUSES)}")
    for density in densities:
        if density not in DENSITIES:
            raise SystemExit(f"--density: {density!r} is not one of {', '.join(DENSITIES)}")
    admin_dsn = admin_dsn or os.environ.get("OPS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory(prefix="ops-bench-incr-") as tmp:
        figures = run_incremental_bench(kinds, densities, small, large, seed, admin_dsn, Path(tmp))
    print_table(figures)
    write_figures(json_path, figures)
    return 0
