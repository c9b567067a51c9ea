"""Source sessions and bulk readers: stream a source query into the warehouse.

A ``SourceSession`` holds one read-only REPEATABLE READ transaction on the source for a whole
table extract, so the main read, the per-day reconciliation and the re-reads that repair it all
see one snapshot (a row committed in between cannot make a repaired day look different again).
One kind per (source kind, warehouse kind) pair, each the fastest bulk path measured here (see
shared/performance-notes.md):

- PostgreSQL → DuckDB: ADBC Arrow record batches, scanned by DuckDB as they arrive;
- PostgreSQL → PostgreSQL: ``COPY … TO STDOUT`` piped into ``COPY … FROM STDIN``;
- DuckDB → DuckDB: the source file is attached read-only to the warehouse connection;
- DuckDB → PostgreSQL: Arrow batches written as CSV into ``COPY … FROM STDIN``.

None of them turns rows into Python objects, and none holds more than one batch at a time
(``OPS_EXTRACT_BATCH_ROWS`` rows, or a COPY chunk): an extract's memory does not grow with the
table (DuckDB's own is capped by OPS_DUCKDB_MEMORY_LIMIT, past which it spills). ``on_batch`` is
a hook called as each chunk goes in (tests use it to kill a connection mid-read).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Callable

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv

from orchestration.lib.db import PostgresConnectError, connect_failure_message, duckdb_memory_connect, open_postgres
from orchestration.lib.extract.source import SOURCE_ALIAS
from orchestration.lib.settings import Location, extract_batch_rows, extract_duckdb_memory_limit

BatchHook = Callable[[int], None]  # called with the number of rows streamed so far
COPY_CHUNK_BYTES = 1 << 20
ARROW_RELATION = "ops_source_arrow"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class SourceSession:
    """One source connection in a read-only snapshot, for one table's extract."""

    postgres: bool
    # how rows travel: options for ReadPlan.select_list on this path
    select_options: dict = {}

    def rows(self, sql: str, params: tuple | None = None) -> list[tuple]:
        raise NotImplementedError

    def now(self) -> datetime:
        return _as_utc(self.rows("select now()" if self.postgres else "select current_timestamp")[0][0])

    def close(self) -> None:
        raise NotImplementedError


class PostgresCopySession(SourceSession):
    """PostgreSQL source → PostgreSQL warehouse: psycopg, COPY out piped into COPY in."""

    postgres = True

    def __init__(self, source: Location) -> None:
        assert source.dsn is not None
        self.conn = open_postgres(source, autocommit=True)  # the DSN's parameters + session timeouts
        self.conn.execute("set timezone = 'UTC'")
        self.conn.execute("set datestyle = 'ISO, MDY'")
        self.conn.autocommit = False
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True

    def rows(self, sql: str, params: tuple | None = None) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def copy_into_postgres(self, wh_conn, query: str, target: str, columns: list[str],
                           on_batch: BatchHook | None) -> None:
        col_list = ", ".join(f'"{c}"' for c in columns)
        streamed = pending = 0
        with self.conn.cursor().copy(f"copy ({query}) to stdout") as out, \
                wh_conn.cursor().copy(f"copy {target} ({col_list}) from stdin") as inp:
            for chunk in out:
                inp.write(chunk)
                pending += len(chunk)
                if on_batch is not None and pending >= COPY_CHUNK_BYTES:
                    streamed += pending
                    pending = 0
                    on_batch(streamed)

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


class PostgresArrowSession(SourceSession):
    """PostgreSQL source → DuckDB warehouse: ADBC record batches scanned by DuckDB as they arrive.
    ADBC garbles ±infinity timestamps (int64 overflow), so the plan adds ``_nf_<column>`` text
    columns holding them (ReadPlan.select_list(nonfinite_columns=True))."""

    postgres = True
    select_options = {"nonfinite_columns": True}

    def __init__(self, source: Location) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        assert source.dsn is not None
        try:  # ADBC takes a URI: every libpq parameter and the session timeouts in its query string
            self.conn = adbc.connect(source.uri())
        except adbc.Error as exc:
            raise PostgresConnectError(connect_failure_message(source, exc)) from None
        self.cur = self.conn.cursor()
        for statement in ("set timezone = 'UTC'", "set datestyle = 'ISO, MDY'",
                          "set session characteristics as transaction isolation level repeatable read, read only"):
            self.cur.execute(statement)
        self.conn.commit()  # the next statement opens the snapshot transaction

    def rows(self, sql: str, params: tuple | None = None) -> list[tuple]:
        if params:
            sql = _inline_params(sql, params)
        self.cur.execute(sql)
        return self.cur.fetchall()

    def stream_into_duckdb(self, wh_conn, query: str, insert_sql: str, on_batch: BatchHook | None) -> None:
        """``insert_sql`` has a ``{relation}`` placeholder for the scanned batches."""
        self.cur.execute(query)
        reader = self.cur.fetch_record_batch()
        if on_batch is not None:
            reader = pa.RecordBatchReader.from_batches(reader.schema, _counted(reader, on_batch))
        # one statement scanning the stream: DuckDB writes full row groups out as they fill, so
        # memory stays flat (measured: an INSERT per batch in one transaction kept the
        # transaction's rows in memory, 1.3 GB at 3M rows)
        _insert_from_arrow(wh_conn, insert_sql, reader)

    def close(self) -> None:
        try:
            self.cur.close()
            self.conn.rollback()
        finally:
            self.conn.close()


class DuckDBSession(SourceSession):
    """A DuckDB source file attached read-only: to the DuckDB warehouse's own connection (its
    transaction is the snapshot), or to an in-memory connection for a PostgreSQL warehouse."""

    postgres = False

    def __init__(self, source: Location, conn=None) -> None:
        if not source.path or not source.path.exists():
            raise FileNotFoundError(f"source DuckDB file not found: {source.path}")
        self.own = conn is None
        self.conn = conn if conn is not None else duckdb_memory_connect(extract_duckdb_memory_limit())
        if self.own:
            self.conn.execute("set timezone = 'UTC'")
        self.conn.execute(f"attach '{source.path}' as {SOURCE_ALIAS} (read_only)")
        if self.own:
            self.conn.execute("begin transaction")

    @property
    def select_options(self) -> dict:  # type: ignore[override]
        # into PostgreSQL through CSV: timestamps as text, so ±infinity survives the hop
        return {"timestamps_as_text": True} if self.own else {}

    def rows(self, sql: str, params: tuple | None = None) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def insert_into_duckdb(self, query: str, insert_sql: str, on_batch: BatchHook | None) -> None:
        """Same connection: one INSERT … SELECT."""
        self.conn.execute(insert_sql.format(relation=f"({query})"))
        if on_batch is not None:
            on_batch(-1)  # one statement: no batches to count

    def copy_into_postgres(self, wh_conn, query: str, target: str, columns: list[str],
                           on_batch: BatchHook | None) -> None:
        col_list = ", ".join(f'"{c}"' for c in columns)
        reader = self.conn.sql(query).to_arrow_reader(extract_batch_rows())
        rows = 0
        options = pa_csv.WriteOptions(include_header=False)
        with wh_conn.cursor().copy(f"copy {target} ({col_list}) from stdin (format csv)") as inp:
            for batch in reader:
                buf = io.BytesIO()
                pa_csv.write_csv(batch, buf, write_options=options)
                inp.write(buf.getbuffer())  # no copy of the batch's CSV
                del buf
                rows += batch.num_rows
                if on_batch is not None:
                    on_batch(rows)

    def close(self) -> None:
        if self.own:
            try:
                self.conn.execute("rollback")
            finally:
                self.conn.close()
        else:
            self.conn.execute(f"detach {SOURCE_ALIAS}")


def open_session(source: Location, warehouse: Location, wh_conn) -> SourceSession:
    if source.is_postgres:
        return PostgresCopySession(source) if warehouse.is_postgres else PostgresArrowSession(source)
    return DuckDBSession(source, None if warehouse.is_postgres else wh_conn)


def _counted(reader, on_batch: BatchHook):
    """The reader's batches, calling ``on_batch`` as each one is taken."""
    rows = 0
    for batch in reader:
        yield batch
        rows += batch.num_rows
        on_batch(rows)


def _insert_from_arrow(wh_conn, insert_sql: str, arrow_object) -> None:
    wh_conn.register(ARROW_RELATION, arrow_object)
    try:
        wh_conn.execute(insert_sql.format(relation=ARROW_RELATION))
    finally:
        wh_conn.unregister(ARROW_RELATION)


def _inline_params(sql: str, params: tuple) -> str:
    """ADBC takes no parameters for these small catalog queries: inline them as literals."""
    def literal(value) -> str:
        if value is None:
            return "null"
        if isinstance(value, int):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"
    parts = sql.split("%s")
    assert len(parts) == len(params) + 1, "parameter count"
    return "".join(p + (literal(v) if i < len(params) else "") for i, (p, v) in
                   enumerate(zip(parts, [*params, None])))
