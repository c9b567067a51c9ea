"""Bulk writing into the source: Arrow tables in, COPY (PostgreSQL) or Arrow scans (DuckDB) out.

Rows arrive as Python tuples; each batch becomes one Arrow table. PostgreSQL receives it as CSV
through ``COPY … FROM STDIN`` (Arrow's C++ CSV writer does the formatting, and the server parses
jsonb from the JSON text); DuckDB inserts from the registered Arrow table. Upserts (heartbeats,
decisions) go through a staging table and ``on conflict … do update``. Nothing is inserted row
by row.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from orchestration.lib.db import duckdb_connect, postgres_connect
from orchestration.lib.settings import Location
from orchestration.lib.simulator.model import INFINITY

TS = pa.timestamp("us", tz="UTC")


class TableShape:
    """A source table's name, columns (in row order) and their Arrow types."""

    def __init__(self, name: str, columns: Sequence[tuple[str, pa.DataType]], key: str | None = None):
        self.name = name
        self.columns = tuple(c for c, _ in columns)
        self.schema = pa.schema(list(columns))
        self.key = key

    def to_arrow(self, rows: Sequence[Sequence[Any]]) -> pa.Table:
        """Rows in column order (extra trailing fields are ignored) as an Arrow table."""
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in self.columns]
        return pa.Table.from_arrays(  # zip stops at the schema: trailing fields are dropped
            [pa.array(values, type=field.type) for values, field in zip(columns, self.schema, strict=False)],
            schema=self.schema,
        )

    def column_list(self) -> str:
        return ", ".join(f'"{c}"' for c in self.columns)


SYSTEM_EVENTS = TableShape("system_events", [
    ("id", pa.string()), ("event_type", pa.string()), ("event_data", pa.string()),
    ("metadata", pa.string()), ("severity", pa.string()), ("message", pa.string()),
    ("component", pa.string()), ("timestamp", TS), ("created_at", TS),
])
POSTING_ATTEMPTS = TableShape("posting_attempts", [
    ("id", pa.string()), ("job_type", pa.string()), ("decision_id", pa.string()),
    ("target_tweet_id", pa.string()), ("tweet_id", pa.string()), ("status", pa.string()),
    ("error_message", pa.string()), ("metrics", pa.string()), ("created_at", TS),
])
METRICS_SCRAPER_RUNS = TableShape("metrics_scraper_runs", [
    ("id", pa.int64()), ("run_at", TS), ("runner_mode", pa.bool_()), ("status", pa.string()),
    ("eligible_count", pa.int32()), ("scraped_count", pa.int32()), ("updated_count", pa.int32()),
    ("skipped_count", pa.int32()), ("failed_count", pa.int32()), ("duration_ms", pa.int32()),
    ("skip_reason", pa.string()), ("error_message", pa.string()),
])
JOB_HEARTBEATS = TableShape("job_heartbeats", [
    ("job_name", pa.string()), ("last_success", TS), ("last_failure", TS),
    ("last_run_status", pa.string()), ("last_error", pa.string()),
    ("consecutive_failures", pa.int32()), ("updated_at", TS),
], key="job_name")
DECISIONS = TableShape("content_generation_metadata_comprehensive", [
    ("id", pa.int64()), ("decision_id", pa.string()), ("decision_type", pa.string()),
    ("status", pa.string()), ("content", pa.string()), ("generator_name", pa.string()),
    ("topic", pa.string()), ("predicted_er", pa.float64()), ("quality_score", pa.float64()),
    ("scheduled_at", TS), ("posted_at", TS), ("tweet_id", pa.string()),
    ("thread_tweet_ids", pa.string()), ("target_tweet_id", pa.string()), ("skip_reason", pa.string()),
    ("error_message", pa.string()), ("features", pa.string()), ("is_test_post", pa.bool_()),
    ("created_at", TS), ("updated_at", TS),
], key="decision_id")

SERIAL_TABLES = (DECISIONS, METRICS_SCRAPER_RUNS)

TRUTH_DDL = """
create schema if not exists sim_truth;
create table if not exists sim_truth.incidents (
    incident_id text primary key,
    kind        text not null,
    start_at    timestamptz not null,
    end_at      timestamptz not null,
    subject     text not null,
    details     jsonb not null
)
"""


class SourceWriter(Protocol):
    def insert(self, shape: TableShape, table: pa.Table) -> None: ...
    def upsert(self, shape: TableShape, table: pa.Table) -> None: ...
    def delete_events(self, ids: Sequence[str]) -> int: ...
    def delete_decisions(self, decision_ids: Sequence[str]) -> int: ...
    def defer_indexes(self, shape: TableShape) -> None:
        """Drop secondary indexes for a bulk load into an empty table (finish_load rebuilds them)."""
    def finish_load(self) -> None:
        """Rebuild deferred indexes; move id sequences past the ids given explicitly."""
    def end_batch(self) -> None:
        """A point where the writer may commit what it has written so far."""
    def close(self) -> None:
        """Commit and close."""
    def abort(self) -> None:
        """Roll back what is not committed yet, and close."""


def open_writer(location: Location) -> SourceWriter:
    return PostgresWriter(location) if location.is_postgres else DuckDBWriter(location)


class PostgresWriter:
    def __init__(self, location: Location) -> None:
        self.conn = postgres_connect(location)
        self.deferred: list[str] = []

    def _copy(self, target: str, columns: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        pa_csv.write_csv(_infinity_spelled_out(table), buffer,
                         write_options=pa_csv.WriteOptions(include_header=False))
        statement = f"copy {target} ({columns}) from stdin (format csv)"
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(buffer.getbuffer())

    def insert(self, shape: TableShape, table: pa.Table) -> None:
        if table.num_rows:
            self._copy(shape.name, shape.column_list(), table)

    def upsert(self, shape: TableShape, table: pa.Table) -> None:
        if not table.num_rows:
            return
        stage = f"_sim_stage_{shape.name}"[:60]
        columns = shape.column_list()
        self.conn.execute(f"create temp table if not exists {stage} as "
                          f"select {columns} from {shape.name} with no data")
        self.conn.execute(f"truncate {stage}")
        self._copy(stage, columns, table)
        self.conn.execute(
            f"insert into {shape.name} ({columns}) select {columns} from {stage} "
            f"on conflict ({shape.key}) do update set {_excluded(shape)}"
        )

    def defer_indexes(self, shape: TableShape) -> None:
        # Building an index once after the load is much cheaper than maintaining it row by row
        # (random uuids scatter primary-key inserts over an index larger than shared_buffers).
        # Definitions are read back from the catalog, so the source DDL stays the only truth.
        for name, definition in self.conn.execute(
            "select conname, pg_get_constraintdef(oid) from pg_constraint "
            "where conrelid = %s::regclass and contype = 'p'", (shape.name,)
        ).fetchall():
            self.conn.execute(f'alter table {shape.name} drop constraint "{name}"')
            self.deferred.append(f'alter table {shape.name} add constraint "{name}" {definition}')
        for name, definition in self.conn.execute(
            "select indexname, indexdef from pg_indexes where schemaname = current_schema() "
            "and tablename = %s", (shape.name,)
        ).fetchall():
            self.conn.execute(f'drop index "{name}"')
            self.deferred.append(definition)

    def finish_load(self) -> None:
        for definition in self.deferred:
            self.conn.execute(definition)
        self.deferred.clear()
        for shape in SERIAL_TABLES:  # ids are given explicitly; keep each bigserial ahead of them
            self.conn.execute(
                f"select setval(pg_get_serial_sequence('{shape.name}', 'id'), "
                f"(select coalesce(max(id), 1) from {shape.name}))"
            )

    def delete_events(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        cur = self.conn.execute("delete from system_events where id = any(%s::uuid[])", (list(ids),))
        return cur.rowcount

    def delete_decisions(self, decision_ids: Sequence[str]) -> int:
        if not decision_ids:
            return 0
        cur = self.conn.execute(f"delete from {DECISIONS.name} where decision_id = any(%s::text[])",
                                (list(decision_ids),))
        return cur.rowcount

    def end_batch(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()

    def abort(self) -> None:
        self.conn.rollback()
        try:
            self.finish_load()  # indexes dropped in an earlier, committed batch must come back
            self.conn.commit()
        finally:
            self.conn.close()


class DuckDBWriter:
    # Small commits each cost DuckDB a checkpoint (committing every chunk of a scale-1 month is
    # 3x slower), while one huge transaction holds its rows in memory (2 GB for 7M events).
    ROWS_PER_COMMIT = 500_000

    def __init__(self, location: Location) -> None:
        self.conn = duckdb_connect(location)
        self.conn.execute("set enable_progress_bar = false")
        self.conn.execute("begin transaction")
        self.uncommitted = 0

    def insert(self, shape: TableShape, table: pa.Table) -> None:
        self.uncommitted += table.num_rows
        if table.num_rows:
            self.conn.register("_sim_batch", table)
            try:
                self.conn.execute(f"insert into {shape.name} ({shape.column_list()}) "
                                  f"select {shape.column_list()} from _sim_batch")
            finally:
                self.conn.unregister("_sim_batch")

    def upsert(self, shape: TableShape, table: pa.Table) -> None:
        if table.num_rows:
            self.conn.register("_sim_batch", table)
            try:
                self.conn.execute(
                    f"insert into {shape.name} ({shape.column_list()}) select {shape.column_list()} "
                    f"from _sim_batch on conflict ({shape.key}) do update set {_excluded(shape)}"
                )
            finally:
                self.conn.unregister("_sim_batch")

    def defer_indexes(self, shape: TableShape) -> None:
        """The DuckDB source has no secondary indexes."""

    def finish_load(self) -> None:
        # DuckDB has no setval: draw from each sequence until it is past the largest id
        for shape, sequence in ((DECISIONS, "cgmc_id_seq"), (METRICS_SCRAPER_RUNS, "msr_id_seq")):
            largest = self.conn.execute(f"select coalesce(max(id), 0) from {shape.name}").fetchone()[0]
            current = self.conn.execute(f"select nextval('{sequence}')").fetchone()[0]
            if current < largest:
                self.conn.execute(f"select max(nextval('{sequence}')) from range({largest - current})")

    def delete_events(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        before = self.conn.execute("select count(*) from system_events").fetchone()[0]
        self.conn.execute("delete from system_events where id in (select unnest(?::varchar[]))",
                          [list(ids)])
        return before - self.conn.execute("select count(*) from system_events").fetchone()[0]

    def delete_decisions(self, decision_ids: Sequence[str]) -> int:
        if not decision_ids:
            return 0
        deleted = self.conn.execute(
            f"delete from {DECISIONS.name} where decision_id in (select unnest(?::varchar[])) returning 1",
            [list(decision_ids)]).fetchall()
        return len(deleted)

    def end_batch(self) -> None:
        if self.uncommitted >= self.ROWS_PER_COMMIT:
            self.conn.execute("commit")
            self.conn.execute("begin transaction")
            self.uncommitted = 0

    def close(self) -> None:
        self.conn.execute("commit")
        self.conn.close()

    def abort(self) -> None:
        self.conn.execute("rollback")
        self.conn.close()


class InsertPipeline:
    """Runs a writer's calls in a background thread, so that generating the next chunk (Python)
    and loading the previous one (CSV encoding, COPY, the server's parsing) overlap."""

    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simulator-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (call := self._queue.get()) is not None:
            if self._failure is None:  # after a failure, keep draining so the producer never blocks
                try:
                    call()
                except BaseException as exc:  # handed back to the producer in submit/join
                    self._failure = exc

    def submit(self, call: Callable[[], None]) -> None:
        if self._failure is not None:
            raise self._failure
        self._queue.put(call)

    def join(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._failure is not None:
            raise self._failure


def _infinity_spelled_out(table: pa.Table) -> pa.Table:
    """Timestamps at INFINITY as the text 'infinity' (Arrow's CSV writer would print a date
    PostgreSQL refuses); only batches holding one pay for the conversion."""
    for index, column_field in enumerate(table.schema):
        if not pa.types.is_timestamp(column_field.type):
            continue
        column = table.column(index)
        infinite = pc.equal(column.cast(pa.int64()), INFINITY)
        if pc.any(infinite).as_py():
            text = pc.if_else(infinite, "infinity", pc.cast(column, pa.string()))
            table = table.set_column(index, pa.field(column_field.name, pa.string()), text)
    return table


def _excluded(shape: TableShape) -> str:
    # id and created_at belong to the row's first insert; the rest follows the latest state
    keep = {shape.key, "id", "created_at"}
    return ", ".join(f'"{c}" = excluded."{c}"' for c in shape.columns if c not in keep)


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


def default_truth_path(location: Location) -> Path:
    if location.path is not None:
        return location.path.with_name(f"{location.path.stem}.incidents.json")
    from orchestration.lib.settings import DATA_DIR

    dbname = (location.dsn or "postgres").rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "postgres"
    return DATA_DIR / f"{dbname}.incidents.json"


def write_truth_file(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")


def write_truth_table(location: Location, records: list[dict[str, Any]], *, reset: bool) -> None:
    """PostgreSQL only: the truth in ``sim_truth.incidents``, a schema extraction never reads."""
    with postgres_connect(location) as conn:
        conn.execute(TRUTH_DDL)
        if reset:
            conn.execute("truncate sim_truth.incidents")
        with conn.cursor() as cur:
            cur.executemany(
                "insert into sim_truth.incidents values (%s, %s, %s, %s, %s, %s::jsonb) "
                "on conflict (incident_id) do update set kind = excluded.kind, "
                "start_at = excluded.start_at, end_at = excluded.end_at, "
                "subject = excluded.subject, details = excluded.details",
                [(r["incident_id"], r["kind"], r["start"], r["end"], r["subject"],
                  json.dumps(r["details"])) for r in records],
            )
        conn.commit()
