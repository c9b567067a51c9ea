"""The ops-warehouse code location: thin wiring of the pieces under defs/."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.alerts.reports import report_assets, report_jobs, report_schedules
from orchestration.defs.alerts.sensors import alert_sensors
from orchestration.defs.analyst_copy import build_analyst_copy_asset
from orchestration.defs.error_analytics.assets import mart_error_templates
from orchestration.defs.extract.assets import extract_assets, quarantine_spec
from orchestration.defs.fast_lane import alert_fast_lane_job, alert_fast_lane_schedule
from orchestration.defs.quality.anomalies import anomaly_assets
from orchestration.defs.quality.contract_checks import contract_asset_checks
from orchestration.defs.quality.gx_checks import gx_asset_checks
from orchestration.defs.resources import ops_locations_from_env
from orchestration.defs.schedules import extract_and_build_job, hourly_extract_and_build
from orchestration.defs.transform.dbt_assets import dbt_resource, ops_dbt_models, ops_dbt_template_models

job_assets = [*extract_assets, ops_dbt_models, mart_error_templates, ops_dbt_template_models, *anomaly_assets]

defs = dg.Definitions(
    # the analysts' read-only copy of a DuckDB warehouse: the job's last asset, after all the others
    assets=[*job_assets, quarantine_spec, build_analyst_copy_asset(after=job_assets), *report_assets],
    asset_checks=[*gx_asset_checks, *contract_asset_checks],
    jobs=[extract_and_build_job, alert_fast_lane_job, *report_jobs.values()],
    schedules=[hourly_extract_and_build, alert_fast_lane_schedule, *report_schedules],
    sensors=alert_sensors,
    resources={"ops_locations": ops_locations_from_env(), "dbt": dbt_resource()},
    # in-process: measured faster than multiprocess for this graph on 2 cores. A step runs once its
    # upstream outputs exist even if that step then failed: a failed extract records its (unchanged)
    # raw table and fails, and the dbt step still builds every model that does not read it
    executor=dg.in_process_executor.configured(
        {"step_dependency_config": {"require_upstream_step_success": False}}),
)
