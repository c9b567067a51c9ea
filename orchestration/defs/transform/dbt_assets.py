"""dbt models as Dagster assets; dbt tests become asset checks.

dbt sources ``ops.<table>`` map onto the extraction assets ``raw/<table>``, so the lineage graph
runs unbroken from each source table to the marts. The models reading the mined error templates
(tag ``after_templates``, source ``templates``) are a second dbt asset, built after the Python
asset ``mart_error_templates`` onto which the ``templates`` source tables map:
fct_system_events → mart_error_templates → the template marts.
"""


import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.dbt_project import using_dagster_dev

from orchestration.defs.resources import OpsLocations
from orchestration.lib import settings
from orchestration.lib.build import (AFTER_TEMPLATES_SELECTOR, dbt_build_args, dbt_executable, publish_partial_parse,
                                     time_floor_var)
from orchestration.lib.dbt_env import dbt_environ, dbt_target
from orchestration.lib.extract.engine import failed_tables
from orchestration.lib.extract.raw_schema import RAW_SCHEMA, TABLES

OWNER = "team:ops-warehouse"

# folder under models/ -> Dagster group
GROUP_BY_FOLDER = {
    "staging": "staging",
    "intermediate": "staging",
    "core": "staging",
    "errors": "error_analytics",
    "jobs": "jobs_and_posting",
    "posting": "jobs_and_posting",
    "slo": "jobs_and_posting",
    "quality": "quality",
    "templates": "error_analytics",
}

# dbt source -> the Python asset that writes its tables (other sources are raw extraction tables)
SOURCE_ASSET_KEYS = {"templates": dg.AssetKey(["mart_error_templates"])}


class OpsDbtTranslator(DagsterDbtTranslator):
    """Keys, groups and owners decided in one place."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            if dbt_resource_props.get("source_name") in SOURCE_ASSET_KEYS:
                return SOURCE_ASSET_KEYS[dbt_resource_props["source_name"]]
            return dg.AssetKey([RAW_SCHEMA, dbt_resource_props["name"]])
        return dg.AssetKey([dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        for folder in reversed(fqn[1:-1]):
            if folder in GROUP_BY_FOLDER:
                return GROUP_BY_FOLDER[folder]
        return "staging"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [OWNER]


def _manifest_is_stale(manifest: Path) -> bool:
    """No manifest yet, or a project file (model, macro, seed, test, dbt_project.yml) is newer:
    an asset graph from an old manifest would miss or misname models."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    project_dir = settings.DBT_PROJECT_DIR
    sources = [project_dir / "dbt_project.yml",
               *(f for folder in ("models", "macros", "seeds", "tests") for f in (project_dir / folder).rglob("*")
                 if f.is_file())]
    return any(f.stat().st_mtime > built for f in sources)


def dbt_project_for(warehouse=None) -> DbtProject:
    warehouse = warehouse or settings.warehouse_location()
    project = DbtProject(
        project_dir=settings.DBT_PROJECT_DIR,
        profiles_dir=settings.DBT_PROJECT_DIR,
        target=dbt_target(warehouse),
    )
    if _manifest_is_stale(project.manifest_path) or using_dagster_dev():
        # a fresh clone, an edited project (or `dagster dev`): parse, which needs no database
        subprocess.run([dbt_executable(), "parse", "--quiet", "--project-dir", str(project.project_dir),
                        "--profiles-dir", str(project.profiles_dir), "--target", project.target or "duckdb"],
                       check=True)
    return project


ops_dbt_project = dbt_project_for()


class DbtBuildConfig(dg.Config):
    """Run options: ``as_of`` pins the end of the marts' reporting windows (ISO timestamp; default
    now), for reproducible reports; ``full_refresh`` rebuilds incremental models from scratch."""

    as_of: Optional[str] = None
    full_refresh: bool = False


def _build(context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource,
           ops_locations: OpsLocations) -> Iterator:
    """The one dbt build of both dbt assets; dagster-dbt adds the asset's own select/exclude
    (or the selected subset) to the command."""
    args = dbt_build_args(config.as_of, config.full_refresh, extra_vars=time_floor_var())
    failed = failed_tables(ops_locations.warehouse, context.run.run_id[:12])
    for selector in excluded_for_failed_extracts(failed):
        args += ["--exclude", selector]
    if failed:
        context.log.warning(
            "extract failed in this run for " + ", ".join(sorted(failed)) + ": the models reading "
            + ("it" if len(failed) == 1 else "them") + " are left out of this build (" + " ".join(
                excluded_for_failed_extracts(failed)) + "); every other model is built")
    # the profile reads the warehouse from the environment; derive it from the one setting, for
    # the dbt process only (dagster-dbt starts it inside cli())
    with dbt_environ(ops_locations.warehouse):
        invocation = dbt.cli(args, context=context)
    yield from invocation.stream()
    # the next invocation (the template marts, the next run) starts from this parse
    publish_partial_parse(invocation.target_path, ops_dbt_project.project_dir / ops_dbt_project.target_path)


def excluded_for_failed_extracts(failed: Mapping[str, str]) -> list[str]:
    """dbt selectors of everything downstream of the raw tables a failed extract writes."""
    selectors = []
    for table in sorted(failed):
        spec = TABLES.get(table)
        for source_table in ([table, spec.snapshot_table] if spec and spec.snapshot_table else [table]):
            selectors.append(f"source:ops.{source_table}+")
    return selectors


# source tests become asset checks of the assets that write the sources (raw/<table>,
# mart_error_templates); the three `templates` source tables are all written by mart_error_templates
_TRANSLATOR = OpsDbtTranslator(DagsterDbtTranslatorSettings(enable_code_references=True,
                                                            enable_source_tests_as_checks=True,
                                                            enable_duplicate_source_asset_keys=True))


@dbt_assets(
    manifest=ops_dbt_project.manifest_path,
    project=ops_dbt_project,
    exclude=AFTER_TEMPLATES_SELECTOR,
    dagster_dbt_translator=_TRANSLATOR,
)
def ops_dbt_models(context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource,
                   ops_locations: OpsLocations):
    """Staging, facts and every mart that does not read the mined templates."""
    yield from _build(context, config, dbt, ops_locations)


@dbt_assets(
    manifest=ops_dbt_project.manifest_path,
    project=ops_dbt_project,
    select=AFTER_TEMPLATES_SELECTOR,
    dagster_dbt_translator=_TRANSLATOR,
)
def ops_dbt_template_models(context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource,
                            ops_locations: OpsLocations):
    """The marts reading the mined templates (dbt source ``templates``), after mart_error_templates."""
    yield from _build(context, config, dbt, ops_locations)


def dbt_resource(target: str | None = None) -> DbtCliResource:
    return DbtCliResource(project_dir=ops_dbt_project, target=target or ops_dbt_project.target,
                          dbt_executable=dbt_executable())
