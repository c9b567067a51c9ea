"""One extraction asset per source table, landing in the warehouse ``raw`` schema."""
# (no `from __future__ import annotations`: Dagster reads the config/resource annotations at runtime)


from datetime import datetime, timezone

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.extract.engine import ExtractRequest, ExtractResult, extract_table
from orchestration.lib.extract.raw_schema import RAW_SCHEMA, TABLES

OWNER = "team:ops-warehouse"


class ExtractConfig(dg.Config):
    """Run options (Launchpad): incremental by default; a full refresh re-reads the whole table
    (history of deleted rows is kept); a backfill re-reads [backfill_start, backfill_end)."""

    mode: str = "incremental"
    backfill_start: str | None = None
    backfill_end: str | None = None

    def to_request(self) -> ExtractRequest:
        if self.mode not in ("incremental", "full_refresh", "backfill"):
            raise ValueError(f"mode must be incremental, full_refresh or backfill, not {self.mode!r}")
        return ExtractRequest(mode=self.mode, backfill_start=_parse_ts(self.backfill_start),  # type: ignore[arg-type]
                              backfill_end=_parse_ts(self.backfill_end))


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def extract_metadata(result: ExtractResult) -> dict:
    """What the operator sees on each materialization."""
    meta: dict = {
        "mode": result.mode,
        "rows_read": dg.MetadataValue.int(result.rows_read),
        "rows_inserted": dg.MetadataValue.int(result.rows_inserted),
        "rows_updated": dg.MetadataValue.int(result.rows_updated),
        "rows_unchanged": dg.MetadataValue.int(result.rows_unchanged),
        "rows_marked_deleted": dg.MetadataValue.int(result.rows_marked_deleted),
        "rows_quarantined": dg.MetadataValue.int(result.rows_quarantined),
        "quarantined_by_reason": dg.MetadataValue.json(result.quarantined_by_reason),
        "cursor_before": str(result.cursor_before) if result.cursor_before else "none (first run)",
        "cursor_after": str(result.cursor_after) if result.cursor_after else "none",
        "window_start": str(result.window_start) if result.window_start else "beginning",
        "lag_seconds": dg.MetadataValue.float(result.lag_seconds if result.lag_seconds is not None else -1.0),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(round(result.rows_per_second, 1)),
    }
    return meta


def quarantine_check(result: ExtractResult) -> dg.AssetCheckResult:
    """Passes when the run quarantined nothing; a warning (the run itself went on) otherwise."""
    return dg.AssetCheckResult(
        asset_key=[RAW_SCHEMA, result.table],
        check_name="no_rows_quarantined",
        passed=result.rows_quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_quarantined": dg.MetadataValue.int(result.rows_quarantined),
            "by_reason": dg.MetadataValue.json(result.quarantined_by_reason),
            "where": f"select * from {RAW_SCHEMA}._quarantine where source_table = '{result.table}'",
        },
    )


def _description(table: str) -> str:
    spec = TABLES[table]
    text = (
        f"`{table}` from the bot's operational database, landed in `{RAW_SCHEMA}.{table}`: "
        f"incremental on `{spec.cursor}` with an overlap window re-read every run, merged on "
        f"`{spec.key}`, exactly once (rows and cursor commit together). Bad rows go to "
        f"`{RAW_SCHEMA}._quarantine` with their reason."
    )
    if spec.detect_deletes:
        text += " Rows deleted in the source are marked `_deleted_at`, not dropped."
    return text


def build_extract_asset(table: str) -> dg.AssetsDefinition:
    spec = TABLES[table]
    specs = [dg.AssetSpec(
        key=[RAW_SCHEMA, table], group_name="extract", owners=[OWNER], kinds={"python", "sql"},
        description=_description(table),
        metadata={"source_table": table, "cursor_column": spec.cursor, "primary_key": spec.key},
    )]
    if spec.snapshot_table:
        specs.append(dg.AssetSpec(
            key=[RAW_SCHEMA, spec.snapshot_table], group_name="extract", owners=[OWNER],
            kinds={"python", "sql"},
            description=(f"One row per observed change of a `{table}` row (the source keeps only the "
                         f"current state): appended by the `{table}` extraction whenever a re-read row "
                         "changed, so run history can be rebuilt."),
        ))

    checks = [dg.AssetCheckSpec(
        "no_rows_quarantined", asset=[RAW_SCHEMA, table],
        description="Warns when this run sent source rows to raw._quarantine (reasons in the metadata).",
    )]

    @dg.multi_asset(name=f"extract_{table}", specs=specs, check_specs=checks)
    def _extract(context: dg.AssetExecutionContext, config: ExtractConfig, ops_locations: OpsLocations):
        result = extract_table(ops_locations.source, ops_locations.warehouse, table,
                               config.to_request(), run_id=context.run_id[:12])
        context.log.info(
            f"{table}: read {result.rows_read}, inserted {result.rows_inserted}, updated "
            f"{result.rows_updated}, deleted {result.rows_marked_deleted}, quarantined "
            f"{result.rows_quarantined} in {result.seconds:.2f}s"
        )
        yield dg.MaterializeResult(asset_key=[RAW_SCHEMA, table], metadata=extract_metadata(result))
        yield quarantine_check(result)
        if spec.snapshot_table:
            yield dg.MaterializeResult(asset_key=[RAW_SCHEMA, spec.snapshot_table],
                                       metadata={"snapshots_added": dg.MetadataValue.int(result.snapshots_added)})

    return _extract


extract_assets = [build_extract_asset(table) for table in TABLES]

# Written by every extraction run, owned by none: shown in the graph as a source of its own.
quarantine_spec = dg.AssetSpec(
    key=[RAW_SCHEMA, "_quarantine"], group_name="extract", owners=[OWNER], kinds={"sql"},
    description=("Rows the extraction refused, with the reason (missing key or event_type, broken JSON, "
                 "timestamp far in the future), the source table, the row as JSON, first and last seen."),
)
