"""One extraction asset per source table, landing in the warehouse ``raw`` schema, with its checks:
``no_rows_quarantined`` (rows this run refused), ``source_schema_unchanged`` (drift) and
``source_reconciled`` (per-day counts and hash sums against the source, after the repair)."""
# (no `from __future__ import annotations`: Dagster reads the config/resource annotations at runtime)

from datetime import datetime, timezone
from typing import Optional

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.extract.engine import (
    ExtractRequest,
    ExtractResult,
    extract_table,
    record_failure,
)
from orchestration.lib.extract.raw_schema import RAW_SCHEMA, TABLES

OWNER = "team:ops-warehouse"


class ExtractConfig(dg.Config):
    """Run options (Launchpad): incremental by default; a full refresh re-reads the whole table
    (history of deleted rows is kept); a backfill re-reads the rows whose day column is in
    [backfill_start, backfill_end); ``reconcile`` forces (true) or skips (false) the full
    reconcile of every day, which otherwise runs when due (OPS_RECONCILE_INTERVAL_HOURS)."""

    mode: str = "incremental"
    backfill_start: Optional[str] = None
    backfill_end: Optional[str] = None
    reconcile: Optional[bool] = None

    def to_request(self) -> ExtractRequest:
        return ExtractRequest(mode=self.mode, backfill_start=_parse_ts(self.backfill_start),  # type: ignore[arg-type]
                              backfill_end=_parse_ts(self.backfill_end), reconcile=self.reconcile)


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def extract_metadata(result: ExtractResult) -> dict:
    """What the operator sees on each materialization."""
    reconciles = [{"scope": r.scope, "days_compared": r.buckets_compared, "days_differing": r.differing,
                   "repaired": r.repaired, "unresolved": r.unresolved, "re_reads": r.repairs,
                   "rows_inserted": r.counts.inserted, "rows_updated": r.counts.updated + r.counts.restored,
                   "rows_marked_deleted": r.counts.deleted, "rows_quarantined": r.counts.quarantined,
                   "seconds": round(r.seconds, 3)} for r in result.reconciles]
    return {
        "extraction_status": "succeeded",
        "source_relation": result.source_relation,
        "mode": result.mode,
        # a full refresh into DuckDB merges whole days slice by slice (OPS_EXTRACT_SLICE_ROWS)
        **({"merged_in_slices": dg.MetadataValue.int(result.counts.slices)} if result.counts.slices else {}),
        "rows_read": dg.MetadataValue.int(result.rows_read),
        "rows_inserted": dg.MetadataValue.int(result.rows_inserted),
        "rows_updated": dg.MetadataValue.int(result.rows_updated),
        "rows_unchanged": dg.MetadataValue.int(result.rows_unchanged),
        "rows_marked_deleted": dg.MetadataValue.int(result.rows_marked_deleted),
        "rows_quarantined": dg.MetadataValue.int(result.rows_quarantined),
        "rows_newly_quarantined": dg.MetadataValue.int(result.rows_newly_quarantined),
        "quarantine_open": dg.MetadataValue.int(result.quarantine_open),
        "quarantined_by_reason": dg.MetadataValue.json(result.quarantined_by_reason),
        "reconcile": dg.MetadataValue.json(reconciles),
        "schema_drift": dg.MetadataValue.json(result.drift.warnings),
        "cursor_before": str(result.cursor_before) if result.cursor_before else "none (first run)",
        "cursor_after": str(result.cursor_after) if result.cursor_after else "none",
        "window_start": str(result.window_start) if result.window_start else "beginning",
        "lag_seconds": dg.MetadataValue.float(result.lag_seconds if result.lag_seconds is not None else -1.0),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(round(result.rows_per_second, 1)),
        "first_load": dg.MetadataValue.bool(result.first_load),
        # PostgreSQL: ANALYZE ran on the raw table (a first load or a read that changed many rows)
        "analyzed": dg.MetadataValue.bool(result.analyzed),
        "loaded_through": str(result.loaded_through) if result.loaded_through else "none",
    }


def quarantine_check(result: ExtractResult) -> dg.AssetCheckResult:
    """Warns when this run put rows in the quarantine; rows quarantined earlier (still open, or
    re-read again) are in the metadata but do not keep the check red."""
    return dg.AssetCheckResult(
        asset_key=[RAW_SCHEMA, result.table],
        check_name="no_rows_quarantined",
        passed=result.rows_newly_quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_quarantined": dg.MetadataValue.int(result.rows_newly_quarantined),
            "rows_refused_this_run": dg.MetadataValue.int(result.rows_quarantined),
            "quarantine_open": dg.MetadataValue.int(result.quarantine_open),
            "by_reason": dg.MetadataValue.json(result.quarantined_by_reason),
            "where": f"select * from {RAW_SCHEMA}._quarantine where source_table = '{result.table}' "
                     "and resolved_at is null",
        },
    )


def schema_check(result: ExtractResult) -> dg.AssetCheckResult:
    """Warns on schema drift the extract survived: an optional column missing or unreadable, a
    column added, dropped or retyped since the last run. (A column the models need that is
    missing fails the extract itself.)"""
    drift = result.drift
    return dg.AssetCheckResult(
        asset_key=[RAW_SCHEMA, result.table],
        check_name="source_schema_unchanged",
        passed=not drift.warnings,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "source_relation": result.source_relation,
            "warnings": dg.MetadataValue.json(drift.warnings),
            "converted": dg.MetadataValue.json(drift.converted),
            "columns_not_extracted": dg.MetadataValue.int(len(drift.unread)),
            "where": f"select * from {RAW_SCHEMA}._source_columns where source_table = '{result.table}'",
        },
    )


def reconcile_check(result: ExtractResult) -> dg.AssetCheckResult:
    """Fails only when a day still differs from the source after its targeted re-read."""
    unresolved = result.unresolved
    compared = [f"{r.scope}: {r.buckets_compared} days" for r in result.reconciles]
    return dg.AssetCheckResult(
        asset_key=[RAW_SCHEMA, result.table],
        check_name="source_reconciled",
        passed=not unresolved,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "compared": dg.MetadataValue.json(compared or ["not due this run"]),
            "days_repaired": dg.MetadataValue.json([d for r in result.reconciles for d in r.repaired]),
            "days_unresolved": dg.MetadataValue.json(unresolved),
            "where": f"select * from {RAW_SCHEMA}._reconcile_log where source_table = '{result.table}' "
                     "order by checked_at desc",
        },
    )


def _description(table: str) -> str:
    spec = TABLES[table]
    text = (
        f"`{table}` from the bot's operational database (relation: `OPS_SOURCE_TABLE_{spec.setting}`, "
        f"default `{table}`), landed in `{RAW_SCHEMA}.{table}`: incremental on `{spec.cursor}` with an "
        f"overlap re-read every run, merged on `{spec.key}` by row hash, exactly once (rows and cursor "
        f"commit together). Bad rows go to `{RAW_SCHEMA}._quarantine` with their reason; rows deleted in "
        "the source are marked `_deleted_at`, not dropped."
    )
    if spec.mutable:
        text += " Rows of the hot window are re-read every run (the bot updates rows without `updated_at`)."
    if spec.partition:
        text += f" Per-day counts and hash sums (on `{spec.partition}`) are reconciled with the source."
    return text


def build_extract_asset(table: str) -> dg.AssetsDefinition:
    spec = TABLES[table]
    key = [RAW_SCHEMA, table]
    specs = [dg.AssetSpec(
        key=key, group_name="extract", owners=[OWNER], kinds={"python", "sql"},
        description=_description(table),
        metadata={"source_table": table, "cursor_column": spec.cursor, "primary_key": spec.key},
    )]
    if spec.snapshot_table:
        what = ("one row per distinct state" if spec.snapshot_kind == "state"
                else "one row per observed change, with when it was observed (`_observed_at`) and what changed")
        specs.append(dg.AssetSpec(
            key=[RAW_SCHEMA, spec.snapshot_table], group_name="extract", owners=[OWNER], kinds={"python", "sql"},
            description=(f"History of `{table}` rows (the source keeps only the current state): {what}; "
                         f"appended by the `{table}` extraction."),
        ))

    checks = [
        dg.AssetCheckSpec("no_rows_quarantined", asset=key,
                          description="Warns when this run put source rows in raw._quarantine "
                                      "(reasons in the metadata)."),
        dg.AssetCheckSpec("source_schema_unchanged", asset=key,
                          description="Warns on schema drift: an optional column missing, a column added, dropped "
                                      "or retyped in the source."),
        dg.AssetCheckSpec("source_reconciled", asset=key,
                          description="Per-day row counts and hash sums equal the source's after the targeted "
                                      "re-read of the days that differed."),
    ]

    @dg.multi_asset(name=f"extract_{table}", specs=specs, check_specs=checks)
    def _extract(context: dg.AssetExecutionContext, config: ExtractConfig, ops_locations: OpsLocations):
        run_id = context.run.run_id[:12]
        try:
            result = extract_table(ops_locations.source, ops_locations.warehouse, table,
                                   config.to_request(), run_id=run_id)
        except Exception as exc:  # this table only: the rest of the run goes on
            message = f"extract of {table} failed: {exc}"
            record_failure(ops_locations.warehouse, table, run_id, str(exc))
            context.log.error(message)
            # Dagster runs a step only when its upstream outputs exist: the outputs are recorded
            # (raw unchanged, marked failed) so the dbt step can build every model that does not
            # read this table (it leaves out the ones that do), then this step fails the run
            failed = {"extraction_status": "failed", "error": str(exc)[:2000], "raw_table_unchanged": True}
            for asset_spec in specs:
                yield dg.MaterializeResult(asset_key=asset_spec.key, metadata=failed)
            raise dg.Failure(description=message, metadata={"error": str(exc)[:2000]}) from exc
        context.log.info(
            f"{table}: read {result.rows_read}, inserted {result.rows_inserted}, updated "
            f"{result.rows_updated}, deleted {result.rows_marked_deleted}, quarantined "
            f"{result.rows_newly_quarantined} new ({result.quarantine_open} open) in {result.seconds:.2f}s"
        )
        for warning in result.drift.warnings:
            context.log.warning(f"{table}: {warning}")
        if result.unresolved:
            context.log.error(f"{table}: days still differing from the source after the re-read: "
                              f"{', '.join(result.unresolved)}")
        yield dg.MaterializeResult(asset_key=key, metadata=extract_metadata(result))
        yield quarantine_check(result)
        yield schema_check(result)
        yield reconcile_check(result)
        if spec.snapshot_table:
            yield dg.MaterializeResult(asset_key=[RAW_SCHEMA, spec.snapshot_table],
                                       metadata={"snapshots_added": dg.MetadataValue.int(result.snapshots_added)})

    return _extract


extract_assets = [build_extract_asset(table) for table in TABLES]

# Written by every extraction run, owned by none: shown in the graph as a source of its own.
quarantine_spec = dg.AssetSpec(
    key=[RAW_SCHEMA, "_quarantine"], group_name="extract", owners=[OWNER], kinds={"sql"},
    description=("Rows the extraction refused, with the reason (missing key, event_type or event time, a "
                 "timestamp before the floor, infinite or far in the future, JSON PostgreSQL cannot parse, a "
                 "duplicated key), the source table, the row as JSON, first and last seen; open until the "
                 "source row is fixed (`resolution` loaded) or gone."),
)
