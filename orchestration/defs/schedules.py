"""The main job (extract every source table, build the dbt models, mine the error templates, build
the template marts) and its hourly schedule."""

from __future__ import annotations

import dagster as dg

extract_and_build_job = dg.define_asset_job(
    name="extract_and_build",
    # every asset and check but the reports (their own schedules); the explicit checks keep the dbt
    # source tests of raw/_quarantine (an asset spec, not materialized here) in the run
    selection=(dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks())
    - dg.AssetSelection.groups("alerts_and_reports"),
    description=(
        "Extract every source table into raw, then build staging, facts and marts (dbt build), mine the "
        "error templates (mart_error_templates) and build the marts reading them (dbt build, tag "
        "after_templates)."
    ),
)

hourly_extract_and_build = dg.ScheduleDefinition(
    name="hourly_extract_and_build",
    job=extract_and_build_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
