"""Read a warehouse or source location in the tests, in UTC, whichever engine it is."""

from __future__ import annotations

import duckdb
import psycopg

from orchestration.lib.settings import Location


def query_location(loc: Location, sql: str) -> list[tuple]:
    if loc.is_postgres:
        with psycopg.connect(loc.dsn) as conn:
            conn.execute("set timezone = 'UTC'")
            return conn.execute(sql).fetchall()
    conn = duckdb.connect(str(loc.path), read_only=True)
    try:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
