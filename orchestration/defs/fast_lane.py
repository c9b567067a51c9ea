"""The alert fast lane in Dagster: job ``alert_fast_lane`` (extract every source table, build only
the dbt models the alert rules read, no data tests, no template mining, no reports) and its
schedule every OPS_ALERT_LANE_MINUTES (default 2). When a lane run succeeds, the run-status sensor
``alerts_after_warehouse_update`` evaluates the rules at the run's end (as after the hourly job).

The lane and the hourly job write the same warehouse: both carry the run tag
``schedules.SERIAL_TAG``, which the run queue (deploy/dagster.yaml ``tag_concurrency_limits``)
limits to one run at a time; a lane run due while the hourly job runs waits in the queue. A lane
tick skips while an earlier lane run is still queued or running, so a long hourly build leaves one
lane run waiting, not a pile.
"""
# (no `from __future__ import annotations`: Dagster reads the config/resource annotations at runtime)

import dagster as dg
from dagster_dbt import build_dbt_asset_selection

from orchestration.defs.extract.assets import extract_assets
from orchestration.defs.schedules import SERIAL_TAG
from orchestration.defs.transform.dbt_assets import ops_dbt_models
from orchestration.lib.fast_lane import DBT_SELECT, JOB_NAME, lane_cron
from orchestration.lib.settings import DEFAULT_ALERT_LANE_MINUTES, alert_lane_minutes

# the extract assets with their own checks (quarantine, drift, reconcile: computed by the extract
# itself); the lane's dbt models without their data tests (dagster-dbt then runs no dbt test)
# (not the GX suites nor the dbt source tests on raw: they stay in the hourly job)
_EXTRACT = dg.AssetSelection.assets(*extract_assets).without_checks() | dg.AssetSelection.checks(
    *[spec.key for a in extract_assets for spec in a.check_specs])
_MODELS = build_dbt_asset_selection([ops_dbt_models], dbt_select=DBT_SELECT).without_checks()
# the full reconcile stays in the hourly job (when due); the lane only reads what is new
_NO_RECONCILE = {"ops": {a.node_def.name: {"config": {"reconcile": False}} for a in extract_assets}}

alert_fast_lane_job = dg.define_asset_job(
    name=JOB_NAME,
    selection=_EXTRACT | _MODELS,
    tags=SERIAL_TAG,
    config=_NO_RECONCILE,
    description=(
        "The alert fast lane: extract the new rows of every source table (no full reconcile), build the "
        "dbt models the alert rules read (tag alert_lane and their parents; no data tests), then the alert "
        "sensor evaluates the rules. Every OPS_ALERT_LANE_MINUTES; the hourly extract_and_build does the rest."
    ),
)

_IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def _lane_schedule(minutes: int) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="alert_fast_lane_schedule",
        job=alert_fast_lane_job,
        cron_schedule=lane_cron(minutes or DEFAULT_ALERT_LANE_MINUTES),
        execution_timezone="UTC",
        # OPS_ALERT_LANE_MINUTES=0: the lane is off (it can still be started by hand)
        default_status=dg.DefaultScheduleStatus.RUNNING if minutes else dg.DefaultScheduleStatus.STOPPED,
        description=f"The alert fast lane every {minutes or DEFAULT_ALERT_LANE_MINUTES} minutes (OPS_ALERT_LANE_MINUTES); skips while a "
                    "lane run is still queued or running.",
    )
    def alert_fast_lane_schedule(context: dg.ScheduleEvaluationContext):
        waiting = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=JOB_NAME, statuses=_IN_FLIGHT), limit=1)
        if waiting:
            run = waiting[0].dagster_run
            return dg.SkipReason(f"lane run {run.run_id[:8]} is still {run.status.value.lower()}")
        return dg.RunRequest()

    return alert_fast_lane_schedule


alert_fast_lane_schedule = _lane_schedule(alert_lane_minutes())
