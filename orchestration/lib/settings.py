"""Settings from the environment, in one place.

A location is a PostgreSQL DSN (``postgresql://…``) or a DuckDB file (``duckdb:///path`` or a
plain path). Secrets (passwords inside DSNs) are only ever read from the environment and are
never printed: use ``Location.redacted()`` when showing a location.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
