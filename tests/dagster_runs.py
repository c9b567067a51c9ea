"""Test helper: run the code location's main job the way the daemon does — the real executor and
its configuration (``execute_in_process`` ignores executor settings), resources pointed at a
test source and warehouse."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.dbt_env import dbt_target
from orchestration.lib.settings import Location


def main_job(source_url: str, warehouse_url: str) -> dg.JobDefinition:
    """The reconstructor: the code location's job ``extract_and_build`` with these locations."""
    from orchestration.definitions import defs
    from orchestration.defs.resources import OpsLocations
    from orchestration.defs.schedules import extract_and_build_job
    from orchestration.defs.transform.dbt_assets import dbt_resource

    warehouse = Location.parse(warehouse_url)
    return dg.Definitions(
        assets=list(defs.assets or []), asset_checks=list(defs.asset_checks or []), jobs=[extract_and_build_job],
        resources={"ops_locations": OpsLocations(source_url=source_url, warehouse_url=warehouse_url),
                   "dbt": dbt_resource(dbt_target(warehouse))},
        executor=defs.executor,
    ).resolve_job_def("extract_and_build")


def run_main_job(source: Location, warehouse: Location, as_of: str | None = None) -> dg.ExecutionResult:
    job = dg.build_reconstructable_job("dagster_runs", "main_job", reconstructable_args=(
        source.dsn or str(source.path), warehouse.dsn or str(warehouse.path)))
    ops = ("ops_dbt_models", "mart_error_templates", "ops_dbt_template_models")
    run_config = {"ops": {op: {"config": {"as_of": as_of}} for op in ops}} if as_of else {}
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.execute_job(job, instance=instance, run_config=run_config, raise_on_error=False)


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"}


def step_failures(result) -> dict[str, str]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            out[event.step_key] = (error.message if error else "") + " " + (
                event.step_failure_data.user_failure_data.description
                if event.step_failure_data.user_failure_data else "")
    return out
