"""The warehouse ``raw`` schema: where extraction lands the source tables.

Column types are kept portable (text, timestamptz, bigint, integer, boolean, double): the same
DDL runs on DuckDB and PostgreSQL. JSON payloads land as text exactly as the source printed them
(validated on the way in when the source column is not a JSON type); staging parses them.

Bookkeeping columns, on every raw table:
- ``_loaded_at``  when the extractor last wrote the row (insert, change, or deletion mark); the
                  incremental watermark for dbt.
- ``_row_hash``   md5 of the source columns, to merge only rows that changed (tables whose rows
                  change in place; the append-only ``system_events`` has none).
``raw.system_events`` also has ``_deleted_at``: set when the row vanished from the source
(detected inside the re-read overlap window), never dropped from history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RAW_SCHEMA = "raw"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # portable SQL type
    json: bool = False  # holds JSON text: validated, read as ::text from PostgreSQL


@dataclass(frozen=True)
class TableSpec:
    """How one source table is extracted."""

    name: str
    key: str  # primary key in the source and in raw
    cursor: str  # incremental cursor column
    columns: tuple[Column, ...]
    required: tuple[str, ...] = ()  # NULL here sends the row to quarantine
    future_checked: tuple[str, ...] = ()  # a value far in the future sends the row to quarantine
    detect_deletes: bool = False
    # rows never change once written (only deletes): merge = insert new keys, no change hash
    append_only: bool = False
    snapshot_table: str | None = None  # append a snapshot row whenever the row changed
    # "state": one row per distinct state (key, _row_hash) — job_heartbeats; "changes": one row
    # per observed change (key, _observed_at) with what changed (_change) — decisions
    snapshot_kind: str = "state"
    extra_bookkeeping: tuple[Column, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: str = "text", json: bool = False) -> Column:
    return Column(name, type_, json)


TS = "timestamptz"

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="system_events",
            key="id",
            cursor="created_at",
            columns=(
                _c("id"), _c("event_type"), _c("event_data", json=True), _c("metadata", json=True),
                _c("severity"), _c("message"), _c("component"), _c("timestamp", TS), _c("created_at", TS),
            ),
            required=("id", "event_type", "created_at"),
            future_checked=("created_at",),
            detect_deletes=True,
            append_only=True,
        ),
        TableSpec(
            name="job_heartbeats",
            key="job_name",
            cursor="updated_at",
            columns=(
                _c("job_name"), _c("last_success", TS), _c("last_failure", TS), _c("last_run_status"),
                _c("last_error"), _c("consecutive_failures", "integer"), _c("updated_at", TS),
            ),
            required=("job_name", "updated_at"),
            future_checked=("updated_at",),
            snapshot_table="job_heartbeat_snapshots",
        ),
        TableSpec(
            name="content_generation_metadata_comprehensive",
            key="decision_id",
            cursor="updated_at",
            columns=(
                _c("id", "bigint"), _c("decision_id"), _c("decision_type"), _c("status"),
                _c("scheduled_at", TS), _c("posted_at", TS), _c("tweet_id"), _c("thread_tweet_ids"),
                _c("target_tweet_id"), _c("skip_reason"), _c("error_message"), _c("features", json=True),
                _c("is_test_post", "boolean"), _c("created_at", TS), _c("updated_at", TS),
            ),
            required=("decision_id", "updated_at"),
            future_checked=("updated_at",),
            snapshot_table="decision_snapshots",
            snapshot_kind="changes",
        ),
        TableSpec(
            name="posting_attempts",
            key="id",
            cursor="created_at",
            columns=(
                _c("id"), _c("job_type"), _c("decision_id"), _c("target_tweet_id"), _c("tweet_id"),
                _c("status"), _c("error_message"), _c("metrics", json=True), _c("created_at", TS),
            ),
            required=("id", "created_at"),
            future_checked=("created_at",),
        ),
        TableSpec(
            name="metrics_scraper_runs",
            key="id",
            cursor="run_at",
            columns=(
                _c("id", "bigint"), _c("run_at", TS), _c("runner_mode", "boolean"), _c("status"),
                _c("eligible_count", "integer"), _c("scraped_count", "integer"),
                _c("updated_count", "integer"), _c("skipped_count", "integer"),
                _c("failed_count", "integer"), _c("duration_ms", "integer"), _c("skip_reason"),
                _c("error_message"),
            ),
            required=("id", "run_at"),
            future_checked=("run_at",),
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
    cols.append("_loaded_at timestamptz not null")
    cols.append("_row_hash text" if spec.append_only else "_row_hash text not null")
    cols.append("_deleted_at timestamptz")
    if postgres:
        cols.append(f"primary key ({_quote(spec.key)})")
    stmts = [f"create table if not exists {RAW_SCHEMA}.{spec.name} (\n    " + ",\n    ".join(cols) + "\n)"]
    if postgres:
        stmts.append(f"create index if not exists {spec.name}_{spec.cursor}_idx "
                     f"on {RAW_SCHEMA}.{spec.name} ({_quote(spec.cursor)})")
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


BOOKKEEPING_DDL = [
    f"""create table if not exists {RAW_SCHEMA}._extract_state (
    source_table   text primary key,
    cursor_column  text not null,
    cursor_value   timestamptz,
    last_run_at    timestamptz,
    last_run_id    text,
    rows_read      bigint,
    rows_inserted  bigint,
    rows_updated   bigint,
    rows_deleted   bigint,
    rows_quarantined bigint
)""",
    f"""create table if not exists {RAW_SCHEMA}._quarantine (
    source_table  text not null,
    row_key       text,
    reason        text not null,
    row_data      text not null,
    _row_hash     text not null,
    first_seen_at timestamptz not null,
    last_seen_at  timestamptz not null,
    primary key (source_table, _row_hash, reason)
)""",
]


def all_raw_ddl(postgres: bool = False) -> list[str]:
    stmts = [f"create schema if not exists {RAW_SCHEMA}"]
    for spec in TABLES.values():
        stmts += raw_table_ddl(spec, postgres)
    return stmts + BOOKKEEPING_DDL
