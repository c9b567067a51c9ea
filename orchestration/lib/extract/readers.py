"""Bulk readers: stream a source query into a warehouse staging table.

One function per (source kind, warehouse kind) pair, each the fastest path measured here
(see shared/performance-notes.md):

- PostgreSQL → DuckDB: ADBC Arrow record batches, scanned by DuckDB as they arrive.
- PostgreSQL → PostgreSQL: ``COPY … TO STDOUT`` piped into ``COPY … FROM STDIN``.
- DuckDB → DuckDB: the source file is attached read-only and read with plain SQL.
- DuckDB → PostgreSQL: Arrow batches written as CSV into ``COPY … FROM STDIN``.

None of them turns rows into Python objects. ``on_batch`` is a hook called after each chunk
lands (tests use it to kill a connection mid-read).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import pyarrow.csv as pa_csv

from orchestration.lib.extract.raw_schema import TableSpec
from orchestration.lib.settings import Location

BatchHook = Callable[[int], None]  # called with the number of rows streamed so far
SOURCE_ALIAS = "ops_source"
DUCKDB_BATCH_ROWS = 250_000
COPY_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class SourceColumns:
    """Which of the spec's columns the source table really has, and of what type."""

    present: dict[str, str]  # column name -> lower-case data type

    def select_list(self, spec: TableSpec, kind: str) -> str:
        """Columns in spec order; a column the source lacks reads as NULL of its raw type."""
        parts = []
        for col in spec.columns:
            quoted = f'"{col.name}"'
            if col.name not in self.present:
                parts.append(f"cast(null as {col.type}) as {quoted}")
            elif kind == "postgres" and (col.json or col.type == "text"):
                # jsonb/uuid printed as text; parsing happens in the warehouse, not the driver
                parts.append(f"{quoted}::text as {quoted}")
            else:
                parts.append(quoted)
        return ", ".join(parts)

    def json_is_guaranteed(self, column: str) -> bool:
        """A json/jsonb source column cannot hold invalid JSON: no need to validate it."""
        return self.present.get(column, "") in ("json", "jsonb")


def source_columns(source_conn, source: Location, table: str) -> SourceColumns:
    if source.is_postgres:
        rows = source_conn.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = current_schema() and table_name = %s",
            (table,),
        ).fetchall()
    else:
        rows = source_conn.execute(
            "select column_name, lower(data_type) from information_schema.columns "
            "where table_catalog = ? and table_name = ?",
            (SOURCE_ALIAS, table),
        ).fetchall()
    if not rows:
        raise ValueError(f"source table {table!r} not found in {source.redacted()}")
    return SourceColumns({name: dtype.lower() for name, dtype in rows})


def _ts_literal(value: datetime) -> str:
    return f"timestamptz '{value.isoformat()}'"


def source_query(spec: TableSpec, cols: SourceColumns, kind: str, table_ref: str,
                 lo: datetime | None, hi: datetime | None) -> str:
    where = []
    if lo is not None:
        where.append(f'"{spec.cursor}" >= {_ts_literal(lo)}')
    if hi is not None:
        where.append(f'"{spec.cursor}" < {_ts_literal(hi)}')
    clause = f" where {' and '.join(where)}" if where else ""
    return f"select {cols.select_list(spec, kind)} from {table_ref}{clause}"


def copy_postgres_to_postgres(src_conn, wh_conn, query: str, stage: str, columns: list[str],
                              on_batch: BatchHook | None) -> None:
    col_list = ", ".join(f'"{c}"' for c in columns)
    streamed = 0
    with src_conn.cursor().copy(f"copy ({query}) to stdout") as out, \
            wh_conn.cursor().copy(f"copy {stage} ({col_list}) from stdin") as inp:
        pending = 0
        for chunk in out:
            inp.write(chunk)
            pending += len(chunk)
            if on_batch is not None and pending >= COPY_CHUNK_BYTES:
                streamed += pending
                pending = 0
                on_batch(streamed)


def arrow_postgres_to_duckdb(dsn: str, wh_conn, query: str, insert_sql: str,
                             on_batch: BatchHook | None) -> None:
    """Stream ADBC record batches into DuckDB. ``insert_sql`` has a ``{relation}`` placeholder
    for the scanned batches (DuckDB reads them as they arrive, in parallel with the fetch)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        reader = cur.fetch_record_batch()
        if on_batch is None:
            _insert_from_arrow(wh_conn, insert_sql, reader)
            return
        rows = 0
        for batch in reader:
            _insert_from_arrow(wh_conn, insert_sql, batch)
            rows += batch.num_rows
            on_batch(rows)


def _insert_from_arrow(wh_conn, insert_sql: str, arrow_object) -> None:
    wh_conn.register("ops_source_arrow", arrow_object)
    try:
        wh_conn.execute(insert_sql.format(relation="ops_source_arrow"))
    finally:
        wh_conn.unregister("ops_source_arrow")


def sql_duckdb_to_duckdb(wh_conn, query: str, insert_sql: str, on_batch: BatchHook | None) -> None:
    """The source file is attached to the warehouse connection: one INSERT … SELECT."""
    wh_conn.execute(insert_sql.format(relation=f"({query})"))
    if on_batch is not None:
        on_batch(-1)  # one statement: no batches to count


def csv_duckdb_to_postgres(src_conn, wh_conn, query: str, stage: str, columns: list[str],
                           on_batch: BatchHook | None) -> None:
    col_list = ", ".join(f'"{c}"' for c in columns)
    reader = src_conn.sql(query).to_arrow_reader(DUCKDB_BATCH_ROWS)
    rows = 0
    with wh_conn.cursor().copy(f"copy {stage} ({col_list}) from stdin (format csv)") as inp:
        for batch in reader:
            buf = io.BytesIO()
            pa_csv.write_csv(batch, buf, write_options=pa_csv.WriteOptions(include_header=False))
            inp.write(buf.getvalue())
            rows += batch.num_rows
            if on_batch is not None:
                on_batch(rows)
