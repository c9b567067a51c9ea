"""Create the bot's operational tables (the source) in PostgreSQL or a DuckDB file."""

from __future__ import annotations

from importlib import resources

from orchestration.lib.db import connect
from orchestration.lib.settings import Location

SOURCE_TABLES = (
    "system_events",
    "job_heartbeats",
    "content_generation_metadata_comprehensive",
    "posting_attempts",
    "metrics_scraper_runs",
)


def source_ddl(kind: str) -> str:
    return resources.files("orchestration.lib.source").joinpath(f"{kind}.sql").read_text()


def create_source_schema(location: Location, *, drop_existing: bool = False) -> None:
    with connect(location) as conn:
        if drop_existing:
            for table in SOURCE_TABLES:
                conn.execute(f"drop table if exists {table} cascade" if location.is_postgres
                             else f"drop table if exists {table}")
            if not location.is_postgres:
                conn.execute("drop sequence if exists cgmc_id_seq")
                conn.execute("drop sequence if exists msr_id_seq")
        conn.execute(source_ddl(location.kind))
