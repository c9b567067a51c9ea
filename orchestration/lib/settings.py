"""Settings from the environment, in one place.

A location is a PostgreSQL DSN (``postgresql://…``) or a DuckDB file (``duckdb:///path`` or a
plain path). Secrets (passwords inside DSNs) are only ever read from the environment and are
never printed: use ``Location.redacted()`` when showing a location.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("OPS_DATA_DIR", PROJECT_ROOT / "data"))
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


@dataclass(frozen=True)
class Location:
    kind: str  # "postgres" | "duckdb"
    dsn: str | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, value: str) -> "Location":
        value = value.strip()
        if value.startswith(("postgresql://", "postgres://")) or "host=" in value or "dbname=" in value:
            return cls(kind="postgres", dsn=value)
        if value.startswith("duckdb://"):
            value = value[len("duckdb://"):]
        if not value:
            raise ValueError("empty location: give a postgresql:// DSN or a DuckDB file path")
        return cls(kind="duckdb", path=Path(value).expanduser().resolve())

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def redacted(self) -> str:
        if not self.is_postgres:
            return str(self.path)
        assert self.dsn is not None
        if "://" not in self.dsn:
            return " ".join(p if not p.startswith("password=") else "password=***" for p in self.dsn.split())
        parts = urlsplit(self.dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def source_location() -> Location:
    return Location.parse(os.environ.get("OPS_SOURCE_URL", str(DATA_DIR / "source.duckdb")))


def warehouse_location() -> Location:
    return Location.parse(os.environ.get("OPS_WAREHOUSE_URL", str(DATA_DIR / "warehouse.duckdb")))


def overlap_minutes() -> float:
    """How far back each incremental read re-reads, to catch rows committed late."""
    return float(os.environ.get("OPS_EXTRACT_OVERLAP_MINUTES", "30"))


def future_tolerance_minutes() -> float:
    """Rows stamped further than this in the future (source clock) are quarantined."""
    return float(os.environ.get("OPS_FUTURE_TOLERANCE_MINUTES", "60"))


# ---------------------------------------------------------------------------------------------
# the source relations and change capture


def source_schema() -> str | None:
    """Schema of the bot's tables in the source (OPS_SOURCE_SCHEMA); None: the connection's
    current schema on PostgreSQL (usually public), ``main`` in a DuckDB file."""
    return os.environ.get("OPS_SOURCE_SCHEMA") or None


def source_table_name(setting: str, default: str) -> str:
    """The source relation (a table or a view) of one raw table: OPS_SOURCE_TABLE_<setting>,
    e.g. OPS_SOURCE_TABLE_DECISIONS=content_metadata."""
    return os.environ.get(f"OPS_SOURCE_TABLE_{setting}") or default


def hot_window_days() -> float:
    """Every run re-checks the rows created in the last N days: tables updated in place are re-read
    whole and compared row by row (the bot changes statuses without touching updated_at); the
    event log is compared by per-day counts and hash sums and the days that differ are re-read."""
    return _positive_float("OPS_HOT_WINDOW_DAYS", "3")


def reconcile_interval_hours() -> float:
    """How often every day of every table is compared with the source (counts and hash sums) and
    the days that differ re-read: the full reconcile."""
    return _positive_float("OPS_RECONCILE_INTERVAL_HOURS", "24")


def time_floor() -> datetime:
    """Timestamps before this (a wrong clock, an epoch default) are quarantined."""
    value = os.environ.get("OPS_TIME_FLOOR", "2020-01-01T00:00:00+00:00")
    try:
        floor = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"OPS_TIME_FLOOR must be an ISO timestamp, got {value!r}") from exc
    return floor if floor.tzinfo else floor.replace(tzinfo=timezone.utc)


def _positive_float(var: str, default: str) -> float:
    value = os.environ.get(var, default)
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"{var} must be a number, got {value!r}") from exc
    if number <= 0:
        raise ValueError(f"{var} must be > 0, got {value!r}")
    return number
