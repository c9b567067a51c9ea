"""Test helpers: read a warehouse or source location in UTC whichever engine it is, make rows
comparable across engines, run dbt on a DuckDB file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg

from orchestration.lib.settings import DBT_PROJECT_DIR, Location


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


def utc(value) -> dt.datetime:
    """A timestamp (datetime or ISO text) as an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return dt.datetime.fromisoformat(value).astimezone(dt.timezone.utc)


def normalise(value):
    """One cell made comparable across engines: floats and decimals rounded, timestamps in UTC."""
    if isinstance(value, (float, Decimal)):
        return round(float(value), 9)
    if isinstance(value, dt.datetime):
        return utc(value)
    return value


def normalised_rows(rows) -> list[tuple]:
    """Rows with every cell normalised, in a deterministic order (NULLs last within a column)."""
    return sorted((tuple(normalise(v) for v in row) for row in rows),
                  key=lambda r: tuple((v is None, str(v)) for v in r))


def error_family(event_type: str) -> str:
    """The folding of the dbt macro ops_trend_error_family, for expected values in tests."""
    name = event_type.lower()
    for suffix, family in (("_job_execution_failed", "job_execution_failed"),
                           ("_consecutive_failures", "consecutive_failures")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return family
    if name != "error_spike_alert" and name.startswith("error_") and len(name) > 6:
        return name[6:]
    return name


def run_dbt_duckdb(args: list[str], warehouse: Path, target_path: Path) -> None:
    """dbt on a DuckDB warehouse file, with its own target and log folders."""
    env = {**os.environ, "OPS_WAREHOUSE_DUCKDB_PATH": str(warehouse)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args,
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target", "duckdb", "--target-path", str(target_path), "--log-path", str(target_path / "logs")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
