"""The warehouse ``raw`` schema: where extraction lands the source tables, and its bookkeeping.

Column types are kept portable (text, timestamptz, bigint, integer, boolean): the same DDL runs on
DuckDB and PostgreSQL. JSON payloads land as text exactly as the source printed them (validated on
the way in unless the source column is ``jsonb``); staging parses them.

Bookkeeping columns, on every raw table:
- ``_loaded_at``  when the extractor last wrote the row (insert, change, deletion mark); the
                  incremental watermark for dbt. Strictly growing per table: each run stamps
                  after the table's newest stamp (``_extract_state.loaded_through``), even when
                  the clock stepped back, so dbt's filter ``_loaded_at > max(_loaded_at)`` needs
                  no lookback, whether rows came in one bulk load or hour by hour.
- ``_row_hash``   md5 of the row as the SOURCE prints it (computed in the source query, over the
                  columns the source has): tells a changed row from an unchanged re-read, and
                  adds up per day for the reconciliation against the source.
- ``_deleted_at`` set when the row vanished from the source (seen by a re-read of its window, the
                  hot window or the reconcile); the row is kept as history, never dropped.

Bookkeeping tables: ``_extract_state`` (cursor and last run per table), ``_quarantine`` (refused
rows with their reason, open until the source row is fixed or gone), ``_source_columns`` (the
source columns as last observed: schema drift), ``_reconcile_log`` (days that differed from the
source, and whether the targeted re-read repaired them).
"""

from __future__ import annotations

from dataclasses import dataclass

RAW_SCHEMA = "raw"
TS = "timestamptz"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # portable SQL type
    json: bool = False  # holds JSON text: validated unless the source column is jsonb
    # the models need it: missing or of an incompatible type, the table's extract fails;
    # otherwise a missing column is a warning and never overwrites stored values with NULL
    needed: bool = False


@dataclass(frozen=True)
class TableSpec:
    """How one source table is extracted."""

    name: str  # the raw table's name (and the source table's default name)
    setting: str  # OPS_SOURCE_TABLE_<setting> names the source relation (a table or a view)
    key: str  # primary key in the source and in raw
    cursor: str  # incremental cursor column
    columns: tuple[Column, ...]
    # the day buckets of the reconciliation and the hot window are on this column (its value
    # never changes once written); None: the whole table is re-read every run
    partition: str | None = None
    required: tuple[str, ...] = ()  # NULL here sends the row to quarantine
    future_checked: tuple[str, ...] = ()  # a value far in the future sends the row to quarantine
    # rows updated in place: every run re-reads the rows of the hot window whole and compares hashes
    # (the writers change status without touching updated_at); otherwise the hot window is checked
    # by per-day counts and hash sums, and only days that differ are re-read
    mutable: bool = False
    # at least one of these must exist in the source (either payload column may be missing)
    one_of_needed: tuple[str, ...] = ()
    snapshot_table: str | None = None  # raw history of the table's rows (see snapshot_kind)
    # "state": one row per distinct state (key, _row_hash) — job_heartbeats; "changes": one row
    # per observed change (key, _observed_at) with what changed (_change) — decisions
    snapshot_kind: str = "state"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def timestamp_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.type == TS]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, type_: str = "text", json: bool = False, needed: bool = False) -> Column:
    return Column(name, type_, json, needed)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="system_events",
            setting="SYSTEM_EVENTS",
            key="id",
            cursor="created_at",
            partition="created_at",
            columns=(
                _c("id", needed=True), _c("event_type", needed=True), _c("event_data", json=True),
                _c("metadata", json=True), _c("severity", needed=True), _c("message"), _c("component"),
                _c("timestamp", TS), _c("created_at", TS, needed=True),
            ),
            one_of_needed=("event_data", "metadata"),
            required=("id", "event_type", "created_at"),
            future_checked=("created_at",),
        ),
        TableSpec(
            name="job_heartbeats",
            setting="JOB_HEARTBEATS",
            key="job_name",
            cursor="updated_at",
            columns=(
                _c("job_name", needed=True), _c("last_success", TS), _c("last_failure", TS),
                _c("last_run_status", needed=True), _c("last_error"), _c("consecutive_failures", "integer"),
                _c("updated_at", TS, needed=True),
            ),
            required=("job_name", "updated_at"),
            future_checked=("updated_at",),
            mutable=True,
            snapshot_table="job_heartbeat_snapshots",
        ),
        TableSpec(
            name="content_generation_metadata_comprehensive",
            setting="DECISIONS",
            key="decision_id",
            cursor="updated_at",
            partition="created_at",
            columns=(
                _c("id", "bigint"), _c("decision_id", needed=True), _c("decision_type"), _c("status", needed=True),
                _c("scheduled_at", TS), _c("posted_at", TS, needed=True), _c("tweet_id", needed=True),
                _c("thread_tweet_ids"), _c("target_tweet_id"), _c("skip_reason"), _c("error_message"),
                _c("features", json=True), _c("is_test_post", "boolean"), _c("created_at", TS, needed=True),
                _c("updated_at", TS, needed=True),
            ),
            required=("decision_id", "created_at", "updated_at"),
            future_checked=("created_at", "updated_at"),
            mutable=True,
            snapshot_table="decision_snapshots",
            snapshot_kind="changes",
        ),
        TableSpec(
            name="posting_attempts",
            setting="POSTING_ATTEMPTS",
            key="id",
            cursor="created_at",
            partition="created_at",
            columns=(
                _c("id", needed=True), _c("job_type"), _c("decision_id"), _c("target_tweet_id"), _c("tweet_id"),
                _c("status", needed=True), _c("error_message"), _c("metrics", json=True),
                _c("created_at", TS, needed=True),
            ),
            required=("id", "created_at"),
            future_checked=("created_at",),
            mutable=True,
        ),
        TableSpec(
            name="metrics_scraper_runs",
            setting="METRICS_SCRAPER_RUNS",
            key="id",
            cursor="run_at",
            partition="run_at",
            columns=(
                _c("id", "bigint", needed=True), _c("run_at", TS, needed=True), _c("runner_mode", "boolean"),
                _c("status", needed=True), _c("eligible_count", "integer"), _c("scraped_count", "integer"),
                _c("updated_count", "integer"), _c("skipped_count", "integer"),
                _c("failed_count", "integer"), _c("duration_ms", "integer"), _c("skip_reason"),
                _c("error_message"),
            ),
            required=("id", "run_at"),
            future_checked=("run_at",),
            mutable=True,
        ),
    )
}


def _quote(name: str) -> str:
    return f'"{name}"'


def raw_table_ddl(spec: TableSpec, postgres: bool) -> list[str]:
    """On PostgreSQL the key is a primary key. On DuckDB it is not declared: an ART index costs
    more than the whole load there, and the merge (anti-join on the key, one writer holding the
    file lock) is what keeps keys unique; dbt's unique tests check it."""
    cols = [f"{_quote(c.name)} {c.type}" for c in spec.columns]
    cols += ["_loaded_at timestamptz not null", "_row_hash text", "_deleted_at timestamptz"]
    if postgres:
        cols.append(f"primary key ({_quote(spec.key)})")
    stmts = [f"create table if not exists {RAW_SCHEMA}.{spec.name} (\n    " + ",\n    ".join(cols) + "\n)"]
    if postgres:
        for column in dict.fromkeys([spec.cursor, *([spec.partition] if spec.partition else [])]):
            stmts.append(f"create index if not exists {spec.name}_{column}_idx "
                         f"on {RAW_SCHEMA}.{spec.name} ({_quote(column)})")
    if spec.snapshot_table:
        snap_cols = [f"{_quote(c.name)} {c.type}" for c in spec.columns]
        snap_cols += ["_observed_at timestamptz not null", "_row_hash text not null"]
        if spec.snapshot_kind == "changes":
            snap_cols.append("_change text not null")
            snap_key = f"{_quote(spec.key)}, _observed_at"
        else:
            snap_key = f"{_quote(spec.key)}, _row_hash"
        stmts.append(
            f"create table if not exists {RAW_SCHEMA}.{spec.snapshot_table} (\n    "
            + ",\n    ".join(snap_cols)
            + f",\n    primary key ({snap_key})\n)"
        )
    return stmts


EXTRACT_STATE_COLUMNS = {
    "source_table": "text primary key",
    "cursor_column": "text not null",
    "cursor_value": "timestamptz",
    "last_run_at": "timestamptz",
    "last_run_id": "text",
    "rows_read": "bigint",
    "rows_inserted": "bigint",
    "rows_updated": "bigint",
    "rows_deleted": "bigint",
    "rows_quarantined": "bigint",
    # added for change capture and isolation (older warehouses get them by ALTER … ADD COLUMN)
    "source_relation": "text",
    "last_status": "text",  # succeeded | failed
    "last_error": "text",
    "last_failed_at": "timestamptz",
    "last_reconciled_at": "timestamptz",  # the last full reconcile of every day
    "last_reconcile_run_id": "text",
    "reconcile_unresolved": "text",  # days still differing after the last reconcile's repair
    "data_from": "timestamptz",  # the earliest partition value among live rows (the hour spine's start)
    # the newest _loaded_at stamped in the table: the next run stamps strictly after it
    "loaded_through": "timestamptz",
    "last_analyzed_at": "timestamptz",  # the last run that ran ANALYZE on the table (PostgreSQL)
}

QUARANTINE_COLUMNS = {
    "source_table": "text not null",
    "row_key": "text",
    "reason": "text not null",
    "row_data": "text not null",
    "_row_hash": "text not null",  # md5 of row_data: with reason, the identity of an entry
    "first_seen_at": "timestamptz not null",
    "last_seen_at": "timestamptz not null",
    # added for idempotent quarantine and the reconciliation
    "source_hash": "text",  # the row's _row_hash as the source query computed it
    "cursor_value": "timestamptz",
    "partition_value": "timestamptz",
    "partition_key": "text",  # the reconcile bucket: a day number, none, infinity, -infinity, all
    "first_run_id": "text",
    "last_run_id": "text",
    "resolved_at": "timestamptz",  # NULL while the bad row is still what the source holds
    "resolution": "text",  # loaded (a good version landed) | gone (deleted or fixed elsewhere)
}

BOOKKEEPING_DDL = [
    f"create table if not exists {RAW_SCHEMA}._extract_state (\n    "
    + ",\n    ".join(f"{name} {type_}" for name, type_ in EXTRACT_STATE_COLUMNS.items()) + "\n)",
    f"create table if not exists {RAW_SCHEMA}._quarantine (\n    "
    + ",\n    ".join(f"{name} {type_}" for name, type_ in QUARANTINE_COLUMNS.items())
    + ",\n    primary key (source_table, _row_hash, reason)\n)",
    f"""create table if not exists {RAW_SCHEMA}._source_columns (
    source_table   text not null,
    column_name    text not null,
    data_type      text not null,
    first_seen_at  timestamptz not null,
    last_seen_at   timestamptz not null,
    gone_since     timestamptz,
    primary key (source_table, column_name)
)""",
    f"""create table if not exists {RAW_SCHEMA}._reconcile_log (
    run_id          text not null,
    source_table    text not null,
    checked_at      timestamptz not null,
    scope           text not null,
    bucket          text not null,
    day             date,
    source_rows     bigint,
    raw_rows        bigint,
    source_hash_sum text,
    raw_hash_sum    text,
    outcome         text not null,
    primary key (run_id, source_table, scope, bucket)
)""",
]

# columns added to bookkeeping tables after their first release: (table, column, type)
_ADDED_COLUMNS = (
    [("_extract_state", name, type_) for name, type_ in list(EXTRACT_STATE_COLUMNS.items())[10:]]
    + [("_quarantine", name, type_) for name, type_ in list(QUARANTINE_COLUMNS.items())[7:]]
    + [(spec.name, "_deleted_at", "timestamptz") for spec in TABLES.values()]
    + [(spec.name, "_row_hash", "text") for spec in TABLES.values()]
)


def all_raw_ddl(postgres: bool = False) -> list[str]:
    stmts = [f"create schema if not exists {RAW_SCHEMA}"]
    for spec in TABLES.values():
        stmts += raw_table_ddl(spec, postgres)
    stmts += BOOKKEEPING_DDL
    # a warehouse made by an earlier release: add what it lacks (no-ops on a new one)
    stmts += [f"alter table {RAW_SCHEMA}.{table} add column if not exists {column} {type_}"
              for table, column, type_ in _ADDED_COLUMNS]
    if postgres:  # raw._row_hash was NOT NULL on the mutable tables; rows may now lack it
        stmts += [f"alter table {RAW_SCHEMA}.{spec.name} alter column _row_hash drop not null"
                  for spec in TABLES.values()]
    return stmts
