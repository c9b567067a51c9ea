"""``ops-warehouse demo``: simulate a month of the bot, run the main Dagster job on the embedded
default (DuckDB source → DuckDB warehouse), and show what came out."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

from orchestration.lib import settings
from orchestration.lib.db import read_query


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="simulate 30 days and materialize everything (embedded DuckDB)")
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    source, warehouse = settings.source_location(), settings.warehouse_location()
    if source.is_postgres or warehouse.is_postgres:
        raise ValueError("the demo runs on the embedded default; unset OPS_SOURCE_URL / OPS_WAREHOUSE_URL")
    os.environ.setdefault("DAGSTER_HOME", str(settings.PROJECT_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    instance_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not instance_yaml.exists():  # local storage (the defaults), no telemetry
        instance_yaml.write_text("telemetry:\n  enabled: false\n")

    from orchestration.lib.simulator import simulate

    print(f"1/3 simulating {args.days:g} days of the bot into {source.path} (seed {args.seed}) ...")
    if warehouse.path and warehouse.path.exists():
        warehouse.path.unlink()  # a demo starts from an empty warehouse
    summary = simulate(source, days=args.days, seed=args.seed)
    print(f"    {summary}")

    log_path = settings.DATA_DIR / "demo-run.log"
    print("2/3 running the Dagster job extract_and_build (extract -> raw -> staging -> marts); "
          f"dbt's log: {log_path}")
    import dagster as dg

    from orchestration.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):  # dbt's per-node lines
        result = defs.resolve_job_def("extract_and_build").execute_in_process(
            instance=dg.DagsterInstance.get(), run_config=quiet, raise_on_error=False)
    if not result.success:
        print(f"    the job failed; see the errors above and {log_path}")
        return 1

    print("3/3 data quality and anomaly checks of the run (asset checks; dbt tests summarised):")
    print_quality_checks(result)
    print("    anomalies of the last 7 days (marts.mart_anomalies), newest first (the simulation injects incidents,\n"
          "    so the anomaly checks fail here by design):")
    print_recent_anomalies(warehouse)
    print("    top error types, last 7 days (marts.mart_error_frequency):")
    print_top_errors(warehouse)
    print("    top error templates, last 7 days (marts.mart_template_rank_7d_30d):")
    print_top_templates(warehouse)
    from orchestration.lib.quality.gx_suites import DATA_DOCS_DIR

    print(f"\nGreat Expectations Data Docs: {DATA_DOCS_DIR / 'index.html'}")
    print(f"warehouse: {warehouse.path}")
    print("  query it: .venv/bin/python -c \"import duckdb; print(duckdb.connect('"
          f"{warehouse.path}', read_only=True).sql('select * from marts.mart_error_frequency'))\"")
    print(f"Dagster runs are stored in {os.environ['DAGSTER_HOME']}; `make dev` opens the UI.")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


def print_top_errors(warehouse, limit: int = 10) -> None:
    _, rows = read_query(warehouse, "select event_type, error_count, days_with_errors, error_count_normalised "
                                    f"from marts.mart_error_frequency order by error_count desc, event_type limit {limit:d}")
    print(f"    {'event_type':40s} {'errors':>8s} {'days':>5s} {'normalised':>10s}")
    for event_type, n, days, n_norm in rows:
        print(f"    {event_type:40s} {n:>8,} {days:>5} {n_norm:>10,}")


def print_top_templates(warehouse, limit: int = 5) -> None:
    _, rows = read_query(warehouse, "select template_rank, n_events, trend, template from marts.mart_template_rank_7d_30d "
                                    f"where window_days = 7 order by template_rank, template_id limit {limit:d}")
    print(f"    {'rank':>4s} {'events':>7s} {'trend':8s} template")
    for rank, n, trend, template in rows:
        print(f"    {rank:>4} {n:>7,} {trend:8s} {template[:90]}")


def print_quality_checks(result) -> None:
    """Every non-dbt asset check of the run (GX suites, payload contract, anomalies, quarantine)
    with its outcome; the dbt tests (also asset checks) as one count."""
    evaluations = result.get_asset_check_evaluations()
    dbt_checks = [e for e in evaluations if "unique_id" in e.metadata]  # dagster-dbt names the dbt test
    ours = [e for e in evaluations if e not in dbt_checks]
    width = max([len(e.asset_key.to_user_string()) for e in ours] + [5])
    print(f"    {'asset':{width}s} {'check':30s} result")
    for e in sorted(ours, key=lambda e: (e.asset_key.to_user_string(), e.check_name)):
        outcome = "passed" if e.passed else f"FAILED ({e.severity.value.lower()})"
        print(f"    {e.asset_key.to_user_string():{width}s} {e.check_name:30s} {outcome}")
    failed_dbt = sum(not e.passed for e in dbt_checks)
    print(f"    dbt tests: {len(dbt_checks) - failed_dbt} of {len(dbt_checks)} passed")


def print_recent_anomalies(warehouse, limit: int = 8) -> None:
    _, rows = read_query(warehouse, "select bucket, series, observed, expected, rules, severity from marts.mart_anomalies "
                                    "where bucket >= (select max(bucket) from marts.mart_anomalies) - interval 7 day "
                                    f"order by bucket desc, series limit {limit:d}")
    if not rows:
        print("    none")
        return
    print(f"    {'hour (UTC)':16s} {'series':36s} {'observed':>8s} {'expected':>8s} {'severity':9s} rules")
    for bucket, series, observed, expected, rules, severity in rows:
        print(f"    {bucket:%Y-%m-%d %H:%M} {series:36s} {observed:>8.0f} {expected or 0:>8.1f} {severity:9s} {rules}")
