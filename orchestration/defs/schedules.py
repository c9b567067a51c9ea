"""The main job (extract every source table, build the dbt models, mine the error templates, build
the template marts) and its hourly schedule."""

from __future__ import annotations

import os

import dagster as dg

DEFAULT_EXTRACT_CRON = "5 * * * *"


def extract_cron() -> str:
    """The hourly schedule's cron (OPS_EXTRACT_CRON; default five past every hour). The no-Docker
    smoke test (tests/test_prod_smoke.py) sets ``* * * * *`` to see the daemon launch a run."""
    return (os.environ.get("OPS_EXTRACT_CRON") or "").strip() or DEFAULT_EXTRACT_CRON


# The run queue (deploy/dagster.yaml tag_concurrency_limits) lets one run with this tag run at a
# time: Dagster gives runs no job-name tag of its own to limit on. Every job that writes the
# warehouse carries it: this one and the alert fast lane (orchestration/defs/fast_lane.py), so the
# two never write the warehouse at once (a DuckDB file takes one writer; on PostgreSQL two
# builds of the same incremental models would race).
SERIAL_TAG = {"ops-warehouse/serial": "warehouse_writer"}

extract_and_build_job = dg.define_asset_job(
    name="extract_and_build",
    # every asset and check but the reports (their own schedules); the explicit checks keep the dbt
    # source tests of raw/_quarantine (an asset spec, not materialized here) in the run
    selection=(dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks())
    - dg.AssetSelection.groups("alerts_and_reports"),
    tags=SERIAL_TAG,
    description=(
        "Extract every source table into raw, then build staging, facts and marts (dbt build), mine the "
        "error templates (mart_error_templates) and build the marts reading them (dbt build, tag "
        "after_templates)."
    ),
)

hourly_extract_and_build = dg.ScheduleDefinition(
    name="hourly_extract_and_build",
    job=extract_and_build_job,
    cron_schedule=extract_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
