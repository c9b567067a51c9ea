"""What change capture costs an hourly extract: the hot-window re-read and the full reconcile next to
the plain incremental read, at the simulated month's volume and at a multiple of it.

For each scale, a month of the simulated bot (its writers' habits included) in a PostgreSQL
source, minus its last hour, is loaded into a DuckDB and a PostgreSQL warehouse; then the last hour
lands in the source and three copies of each warehouse run the same hourly extract of every table:

- plain:     overlap re-read only (no hot window, no reconcile): what the extract did before;
- hot:       + the hot window (rows created in the last OPS_HOT_WINDOW_DAYS re-read and compared
             for the tables updated in place; per-day counts and hash sums for the event log);
- reconcile: + the full reconcile (every day of every table compared with the source), which
             runs once a day by default.

Figures are seconds for all five tables and ratios to the plain run. Client and servers share
this machine's cores: treat them as relative.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from orchestration.lib.bench import write_figures
from orchestration.lib.extract.engine import ExtractRequest, extract_all
from orchestration.lib.settings import Location

END = datetime(2026, 8, 1, tzinfo=timezone.utc)
NEW_HOUR = timedelta(hours=1)
VARIANTS = {
    "plain": ExtractRequest(hot_window=timedelta(0), reconcile=False),
    "hot": ExtractRequest(reconcile=False),
    "reconcile": ExtractRequest(reconcile=True),
}


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


def _copy_warehouse(admin, admin_dsn: str, warehouse: Location, label: str, workdir: Path) -> Location:
    if warehouse.is_postgres:
        name = f"{warehouse.dsn.rsplit('/', 1)[-1]}_{label}"
        admin.execute(f"create database {name} template {warehouse.dsn.rsplit('/', 1)[-1]}")
        return Location.parse(_dsn_for(admin_dsn, name))
    target = workdir / f"{warehouse.path.stem}_{label}.duckdb"
    shutil.copy(warehouse.path, target)
    return Location.parse(str(target))


def run_change_capture_bench(days: float, scales: list[float], seed: int, admin_dsn: str, workdir: Path) -> dict:
    from orchestration.lib.simulator import simulate

    figures: dict = {"days": days, "scales": {}}
    admin = psycopg.connect(admin_dsn, autocommit=True)
    created: list[str] = []
    try:
        for scale in scales:
            suffix = uuid.uuid4().hex[:8]
            src_db, wh_db = f"ops_bench_cc_src_{suffix}", f"ops_bench_cc_wh_{suffix}"
            for db in (src_db, wh_db):
                admin.execute(f"create database {db}")
                created.append(db)
            source = Location.parse(_dsn_for(admin_dsn, src_db))
            truth = workdir / f"truth_{suffix}.json"
            simulate(source, days=days, seed=seed, end=END, scale=scale, write_to=END - NEW_HOUR, truth_path=truth)
            warehouses = {"duckdb": Location.parse(str(workdir / f"wh_{suffix}.duckdb")),
                          "postgres": Location.parse(_dsn_for(admin_dsn, wh_db))}
            f: dict = {}
            for kind, wh in warehouses.items():
                started = time.perf_counter()
                extract_all(source, wh)
                f[f"first_load_{kind}_s"] = time.perf_counter() - started
            with psycopg.connect(source.dsn) as conn:
                f["events"] = conn.execute("select count(*) from system_events").fetchone()[0]
                f["decisions"] = conn.execute(
                    "select count(*) from content_generation_metadata_comprehensive").fetchone()[0]
            simulate(source, days=days, seed=seed, end=END, scale=scale, write_from=END - NEW_HOUR, write_to=END,
                     reset=False, truth_path=truth)
            with psycopg.connect(source.dsn) as conn:
                f["new_hour_events"] = conn.execute("select count(*) from system_events").fetchone()[0] - f["events"]
            for kind, wh in warehouses.items():
                for variant, request in VARIANTS.items():
                    copy = _copy_warehouse(admin, admin_dsn, wh, variant, workdir)
                    if copy.is_postgres:
                        created.append(copy.dsn.rsplit("/", 1)[-1])
                    started = time.perf_counter()
                    results = extract_all(source, copy, request)
                    f[f"{variant}_{kind}_s"] = time.perf_counter() - started
                    f[f"{variant}_{kind}_rows_read"] = sum(r.rows_read + sum(x.counts.read for x in r.reconciles)
                                                           for r in results)
                for variant in ("hot", "reconcile"):
                    f[f"ratio_{variant}_vs_plain_{kind}"] = f[f"{variant}_{kind}_s"] / f[f"plain_{kind}_s"]
            figures["scales"][str(scale)] = f
        return figures
    finally:
        for db in created:
            admin.execute(f"drop database if exists {db} with (force)")
        admin.close()


def print_table(figures: dict) -> None:
    print(f"\nchange capture benchmark: the hourly extract of every table after one new hour "
          f"({figures['days']:g} simulated days, PostgreSQL source)")
    print(f"{'scale':>6s} {'events':>10s} {'warehouse':>10s} {'plain s':>8s} {'+hot s':>8s} {'ratio':>6s} "
          f"{'+reconcile s':>13s} {'ratio':>6s}")
    for scale, f in figures["scales"].items():
        for kind in ("duckdb", "postgres"):
            print(f"{scale:>6s} {f['events']:>10,} {kind:>10s} {f[f'plain_{kind}_s']:>8.2f} "
                  f"{f[f'hot_{kind}_s']:>8.2f} {f[f'ratio_hot_vs_plain_{kind}']:>6.2f} "
                  f"{f[f'reconcile_{kind}_s']:>13.2f} {f[f'ratio_reconcile_vs_plain_{kind}']:>6.2f}")
    print("hot: every hourly run; reconcile: once a day (OPS_RECONCILE_INTERVAL_HOURS=24), in place of one hot run")


def main(days: float, scales: list[float], seed: int, json_path: str | None, admin_dsn: str | None) -> int:
    admin_dsn = admin_dsn or os.environ.get("OPS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory(prefix="ops-bench-cc-") as tmp:
        figures = run_change_capture_bench(days, scales, seed, admin_dsn, Path(tmp))
    print_table(figures)
    write_figures(json_path, figures)
    return 0
