"""``ops-warehouse demo``: simulate a month of the bot, run the main Dagster job on the embedded
default (DuckDB source → DuckDB warehouse), and show what came out."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from orchestration.lib import settings
from orchestration.lib.db import read_query

DELIVERY_ENVS = ("OPS_ALERT_SLACK_WEBHOOK_URL", "OPS_ALERT_WEBHOOK_URL", "OPS_ALERT_SMTP_HOST", "OPS_ALERT_FILE_DIR")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="simulate 30 days and materialize everything (embedded DuckDB)")
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--alert-hours", type=int, default=48,
                   help="replay the alert sensor's hourly ticks over the last N hours of data")
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

    print(f"1/4 simulating {args.days:g} days of the bot into {source.path} (seed {args.seed}), "
          f"its writers' habits included ...")
    if warehouse.path and warehouse.path.exists():
        warehouse.path.unlink()  # a demo starts from an empty warehouse
    end = simulate_end()
    cut = end - timedelta(hours=LAST_HOURS)
    summary = simulate(source, days=args.days, seed=args.seed, end=end, write_to=cut)
    for var in DELIVERY_ENVS:  # the demo never sends to a real Slack / webhook / mailbox
        os.environ.pop(var, None)
    for old in (settings.DATA_DIR / "alerts").glob("notifications.*"):
        old.unlink()  # the demo channel restarts with the warehouse
    print(f"    {summary}")

    log_path = settings.DATA_DIR / "demo-run.log"
    print("2/4 running the Dagster job extract_and_build (extract -> raw -> staging -> marts) on all but the "
          f"last {LAST_HOURS} hours, then again as the hourly run after they land; dbt's log: {log_path}")
    from orchestration.definitions import defs

    with open(log_path, "w") as log:
        if run_main_job(defs, log) is None:
            print(f"    the job failed; see the errors above and {log_path}")
            return 1
        summary = simulate(source, days=args.days, seed=args.seed, end=end, write_from=cut, reset=False)
        result = run_main_job(defs, log)
    if result is None:
        print(f"    the hourly run failed; see the errors above and {log_path}")
        return 1
    print("    what the hourly run's extract met in the source (the simulator's habits are its truth):")
    print_source_fidelity(result, summary)

    print("3/4 data quality and anomaly checks of the run (asset checks; dbt tests summarised):")
    print_quality_checks(result)
    print("    anomalies of the last 7 days (marts.mart_anomalies), newest first (the simulation injects incidents;\n"
          "    the first run flagged them, so the hourly run's anomaly checks fail only on new ones):")
    print_recent_anomalies(warehouse)
    print("    top error types, last 7 days (marts.mart_error_frequency):")
    print_top_errors(warehouse)
    print("    top error templates, last 7 days (marts.mart_template_rank_7d_30d):")
    print_top_templates(warehouse)
    print("4/4 alerts and reports (the demo channel is the file channel; Slack, webhook and email are off):")
    end = summary.end.astimezone(timezone.utc)
    if not replay_alerts(warehouse, end, hours=args.alert_hours):
        return 1
    if not build_reports(defs, end):
        return 1
    from orchestration.lib.quality.gx_suites import DATA_DOCS_DIR

    print(f"\nGreat Expectations Data Docs: {DATA_DOCS_DIR / 'index.html'}")
    from orchestration.lib.analyst_copy import analyst_copy_path

    copy = analyst_copy_path(warehouse)
    print(f"warehouse: {warehouse.path} (the job writes it; no other process can open it meanwhile)")
    print(f"analyst copy: {copy} (read-only, republished after each run of the job)")
    print("  query it: .venv/bin/python -c \"import duckdb; print(duckdb.connect('"
          f"{copy}', read_only=True).sql('select * from marts.mart_error_frequency'))\"")
    print(f"Dagster runs are stored in {os.environ['DAGSTER_HOME']}; `make dev` opens the UI.")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


LAST_HOURS = 6  # the part of the simulated period that lands after the first load


def simulate_end() -> datetime:
    """This hour: the demo's data ends now, as the bot's would."""
    from orchestration.lib.simulator.simulate import default_end

    return default_end()


def run_main_job(defs, log):
    """The main job in this process (dbt's per-node lines go to the log); None when it failed."""
    import dagster as dg

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with contextlib.redirect_stdout(log):
        result = defs.resolve_job_def("extract_and_build").execute_in_process(
            instance=dg.DagsterInstance.get(), run_config=quiet, raise_on_error=False)
    return result if result.success else None


def print_source_fidelity(result, summary) -> None:
    """Per table, what the hourly run's extract did; then the habits the simulator recorded next to
    what the warehouse holds for them."""
    import dagster as dg

    from orchestration.lib.extract.raw_schema import RAW_SCHEMA, TABLES

    print(f"    {'table':42s} {'read':>7s} {'new':>6s} {'changed':>7s} {'deleted':>7s} {'quar.':>5s} {'open':>4s}  "
          "reconcile")
    for table in TABLES:
        events = [e for e in result.get_asset_materialization_events()
                  if e.asset_key == dg.AssetKey([RAW_SCHEMA, table])]
        if not events:
            continue
        m = {k: v.value for k, v in events[0].materialization.metadata.items()}
        reconcile = "; ".join(f"{r['scope']}: {r['days_compared']} days, re-read {', '.join(r['repaired']) or 'none'}"
                              for r in m.get("reconcile", [])) or "-"
        print(f"    {table:42s} {m['rows_read']:>7,} {m['rows_inserted']:>6,} {m['rows_updated']:>7,} "
              f"{m['rows_marked_deleted']:>7,} {m['rows_newly_quarantined']:>5,} {m['quarantine_open']:>4,}  "
              f"{reconcile}")
    counts = summary.habit_counts()
    print(f"    the simulator's writers left: {counts.get('stale_updated_at', 0)} status changes without updated_at, "
          f"{counts.get('deleted_decisions', 0)} deleted decisions, {counts.get('backdated_events', 0)} back-dated "
          f"events, {counts.get('poison_payloads', 0)} broken payloads, {counts.get('bad_event_times', 0)} "
          "impossible event times")


def replay_alerts(warehouse, end: datetime, hours: int) -> bool:
    """The alert sensor's ticks, hour by hour over the last ``hours`` of the simulated data, into
    the demo (file) channel: what the operator would have been sent had the sensor been running.
    The same function the sensors call (``run_tick``); the ledger and outbox stay in the warehouse."""
    from orchestration.lib.alerts.channels import FileChannel
    from orchestration.lib.alerts.outbox import deliver
    from orchestration.lib.alerts.tick import run_tick

    channel = FileChannel(settings.DATA_DIR / "alerts")
    started = time.perf_counter()
    fired = resolved = 0
    errors: dict[str, str] = {}
    for step in range(hours, -1, -1):
        # delivered once at the end, in order: the outbox keeps the ticks' order
        result = run_tick(warehouse, end - timedelta(hours=step), [channel], deliver=False)
        fired += sum(n.status == "firing" for n in result.notifications)
        resolved += sum(n.status == "resolved" for n in result.notifications)
        errors.update(result.rule_errors)
    delivery = deliver(warehouse, [channel], end)
    print(f"    alert ticks: {hours + 1} hourly ticks over the last {hours} h in {time.perf_counter() - started:.1f}s: "
          f"{fired} firing and {resolved} resolved notifications, {len(result.firing)} alerts firing at the end; {delivery.sent} sent")
    for rule, error in sorted(errors.items()):
        print(f"    rule {rule} could not be evaluated: {error}")
    lines = channel.log_path.read_text().splitlines() if channel.log_path.exists() else []
    print(f"    the demo channel: {channel.log_path} ({len(lines)} lines; JSON in {channel.jsonl_path.name}); the last 5:")
    for line in lines[-5:]:
        print(f"      {line[:160]}")
    return not errors


def build_reports(defs, end: datetime) -> bool:
    """The three report jobs, as their schedules would run them at the end of the data."""
    import dagster as dg

    for period in ("daily", "weekly", "monthly"):
        result = defs.resolve_job_def(f"report_{period}").execute_in_process(
            instance=dg.DagsterInstance.get(), raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}},
                        "ops": {f"{period}_report": {"config": {"as_of": end.isoformat()}}}})
        if not result.success:
            print(f"    the {period} report failed; see the errors above")
            return False
        [event] = result.get_asset_materialization_events()
        meta = event.materialization.metadata
        print(f"    {period:8s} report: {meta['path'].value}")
    return True


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
