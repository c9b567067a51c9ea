"""Connections to either kind of location, with the same small surface.

``connect(location)`` returns an object with ``execute(sql, params=None)`` returning a cursor-like
object (``fetchall``/``fetchone``), ``commit()``, ``rollback()`` and ``close()``; it is a context
manager that commits on success and rolls back on error. Bulk paths do not go through here:
they use COPY (psycopg), ADBC or Arrow directly.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import duckdb
import psycopg

from orchestration.lib.settings import Location


def duckdb_connect(location: Location, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    assert location.path is not None
    location.path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(location.path), read_only=read_only)
    conn.execute("set timezone = 'UTC'")
    return conn


def postgres_connect(location: Location, autocommit: bool = False) -> psycopg.Connection:
    assert location.dsn is not None
    conn = psycopg.connect(location.dsn, autocommit=autocommit)
    conn.execute("set timezone = 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


@contextmanager
def connect(location: Location) -> Iterator[duckdb.DuckDBPyConnection | psycopg.Connection]:
    """A transactional connection: commit on success, roll back on error, always close."""
    if location.is_postgres:
        conn = postgres_connect(location)
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
    else:
        conn = duckdb_connect(location)
        conn.execute("begin transaction")
        try:
            yield conn
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        finally:
            conn.close()


def read_query(location: Location, sql: str) -> tuple[list[str], list[tuple]]:
    """One read-only query on either engine (session in UTC): the column names and the rows."""
    conn = (postgres_connect(location, autocommit=True) if location.is_postgres
            else duckdb_connect(location, read_only=True))
    try:
        cur = conn.execute(sql)
        return [column[0] for column in cur.description], cur.fetchall()
    finally:
        conn.close()
