"""The analysts' read-only copy of the DuckDB warehouse as the main job's last asset: thin wiring of
:func:`orchestration.lib.analyst_copy.publish_analyst_copy`.

``analyst_copy`` depends on every leaf asset of the job, so it runs once all of them were built in
the run (a run where some of them were not built — a failed extract, a failed model — skips it, and
the previous copy stays). A failed publish fails the step with the reason; the run's data is already
committed in the warehouse and stays. On a PostgreSQL warehouse it materializes as a no-op.
"""

from collections.abc import Sequence

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.analyst_copy import AnalystCopyError, analyst_copy_path, publish_analyst_copy

OWNER = "team:ops-warehouse"
GROUP = "analysts"
ASSET_KEY = dg.AssetKey(["analyst_copy"])


def leaf_keys(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetKey]:
    """The keys of ``assets`` that none of them depends on: the ends of the job's graph."""
    keys = {key for asset in assets for key in asset.keys}
    upstream = {dep for asset in assets for deps in asset.asset_deps.values() for dep in deps}
    return sorted(keys - upstream, key=lambda k: k.to_user_string())


def build_analyst_copy_asset(after: Sequence[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The asset publishing the copy, downstream of the leaves of ``after`` (the job's assets)."""

    @dg.asset(
        key=ASSET_KEY,
        deps=leaf_keys(after),
        group_name=GROUP,
        owners=[OWNER],
        kinds={"duckdb"},
        description=(
            "A read-only copy of the DuckDB warehouse file for analysts (data/warehouse.analyst.duckdb, or "
            "OPS_ANALYST_COPY_PATH), published after every asset of the main job was built: CHECKPOINT, a file "
            "copy under the writer's lock, fsync, atomic os.replace. Analysts open it with "
            "duckdb.connect(path, read_only=True) while the next run writes the main file (DuckDB lets no other "
            "process open a file being written). No-op on PostgreSQL (analysts use the ops_analyst role)."
        ),
    )
    def analyst_copy(context: dg.AssetExecutionContext, ops_locations: OpsLocations) -> dg.MaterializeResult:
        warehouse = ops_locations.warehouse
        try:
            result = publish_analyst_copy(warehouse)
        except AnalystCopyError as exc:
            context.log.error(str(exc))
            raise dg.Failure(description=str(exc), metadata={
                "target": dg.MetadataValue.path(str(analyst_copy_path(warehouse)))}) from exc
        context.log.info(result.summary_line())
        if result.path is None:
            return dg.MaterializeResult(metadata={"skipped": dg.MetadataValue.text(result.skipped or "")})
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
            "bytes": dg.MetadataValue.int(result.bytes),
            "connect": dg.MetadataValue.text(f"duckdb.connect('{result.path}', read_only=True)"),
        })

    return analyst_copy
