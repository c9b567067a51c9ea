"""The alert sensors: thin wiring of :func:`orchestration.lib.alerts.tick.run_tick`.

- ``alerts_after_warehouse_update`` runs every rule when a run that wrote the warehouse succeeds
  (a run-status sensor: Dagster's cursor hands each finished run to it once; a tick that fails is
  retried with the same run). It evaluates at the run's end time, so a retried tick evaluates at
  the same instant and the ledger and outbox change nothing.
- ``alerts_after_partial_update`` does the same for a run that failed after updating part of the
  warehouse (one source table's extract failed; the other tables and every model not reading it
  were built): alerts must not stop while one table is broken.
- ``alerts_timer`` runs the staleness rules every 5 minutes (a stale job or source shows up with
  no warehouse update at all) and retries pending deliveries. It evaluates at the tick time rounded
  down to 5 minutes; its cursor holds the last instant evaluated.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.alerts.channels import channels_from_env
from orchestration.lib.alerts.tick import STALENESS_RULES, floor_time, run_tick
from orchestration.lib.analyst_copy import is_lock_conflict

TIMER_STEP = timedelta(minutes=5)
# How soon after a run ends its alerts go out: a run-status tick only reads the run storage for new
# run events, so every 10 s costs little; Dagster's default of 30 s added ~20 s to each alert
RUN_SENSOR_INTERVAL_SECONDS = 10
REPORT_JOB_PREFIX = "report_"  # report runs read the warehouse; they do not update it


def _warehouse_busy(exc: Exception) -> bool:
    """A DuckDB warehouse file is locked while a run writes it: try again on the next tick (the
    driver's error and db.DuckDBLockedError, which wraps it, both carry DuckDB's conflict text)."""
    return is_lock_conflict(exc)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="alerts_after_warehouse_update",
    minimum_interval_seconds=RUN_SENSOR_INTERVAL_SECONDS,
    monitor_all_code_locations=True,  # runs started from the UI, a schedule or the CLI alike
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates every alert rule (alerts/rules.yml) after each successful run that updated the "
                "warehouse, records firing/resolved transitions in alerts.ledger and delivers them "
                "through the enabled channels (file always; Slack, webhook, email from the environment).",
)
def alerts_after_warehouse_update(context: dg.RunStatusSensorContext, ops_locations: OpsLocations):
    return _evaluate_after_run(context, ops_locations)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.FAILURE,
    name="alerts_after_partial_update",
    minimum_interval_seconds=RUN_SENSOR_INTERVAL_SECONDS,
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates every alert rule after a run that failed but extracted at least one source table "
                "into the warehouse (a broken table fails its extract and the run, and the rest is built): "
                "alerts go on while one table is broken.",
)
def alerts_after_partial_update(context: dg.RunStatusSensorContext, ops_locations: OpsLocations):
    run = context.dagster_run
    if not updated_tables(ops_locations.warehouse, run.run_id[:12]):
        return dg.SkipReason(f"run {run.run_id[:8]} failed without extracting any table")
    return _evaluate_after_run(context, ops_locations)


def updated_tables(warehouse, run_id: str) -> list[str]:
    """Tables this run extracted successfully (raw._extract_state keeps the last run per table)."""
    from orchestration.lib.db import read_query

    try:
        _, rows = read_query(warehouse, "select source_table from raw._extract_state "
                                        f"where last_status = 'succeeded' and last_run_id = '{run_id.replace(chr(39), '')}'")
    except Exception:  # no raw schema yet, or a busy file: nothing to evaluate on
        return []
    return [table for (table,) in rows]


def _evaluate_after_run(context: dg.RunStatusSensorContext, ops_locations: OpsLocations):
    run = context.dagster_run
    if run.job_name.startswith(REPORT_JOB_PREFIX):
        return dg.SkipReason(f"run {run.run_id[:8]} ({run.job_name}) does not update the warehouse")
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record and record.end_time else datetime.now(timezone.utc).timestamp()
    now = datetime.fromtimestamp(int(ended), tz=timezone.utc)  # whole seconds: stable across retries
    try:
        result = run_tick(ops_locations.warehouse, now, channels_from_env())
    except Exception as exc:
        if _warehouse_busy(exc):  # a failed tick keeps the run-status cursor: this run comes again
            raise RuntimeError("the warehouse file is locked by a running job; the next tick retries") from exc
        raise
    context.log.info(f"alerts at {now:%Y-%m-%d %H:%M:%S}Z after run {run.run_id[:8]}: {result.summary_line()}")
    return dg.SkipReason(f"evaluated at {now.isoformat()}: {result.summary_line()}")


@dg.sensor(
    name="alerts_timer",
    minimum_interval_seconds=int(TIMER_STEP.total_seconds()),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes: the staleness rules (stale_job, stale_source), which fire when nothing "
                "updates, and a retry of pending deliveries.",
)
def alerts_timer(context: dg.SensorEvaluationContext, ops_locations: OpsLocations):
    now = floor_time(datetime.now(timezone.utc), TIMER_STEP)
    if context.cursor and datetime.fromisoformat(context.cursor) >= now:
        return dg.SkipReason(f"already evaluated at {context.cursor}")
    try:
        result = run_tick(ops_locations.warehouse, now, channels_from_env(), only=STALENESS_RULES)
    except Exception as exc:  # noqa: BLE001 - only a busy DuckDB file is expected; others re-raise
        if _warehouse_busy(exc):
            return dg.SkipReason("the warehouse file is locked by a running job; next tick retries")
        raise
    return dg.SensorResult(cursor=now.isoformat(),
                           skip_reason=f"evaluated at {now.isoformat()}: {result.summary_line()}")


alert_sensors = [alerts_after_warehouse_update, alerts_after_partial_update, alerts_timer]
