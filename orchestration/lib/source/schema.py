"""Create the bot's operational tables (the source) in PostgreSQL or a DuckDB file."""

from __future__ import annotations

from importlib import resources

import psycopg

from orchestration.lib.db import connect
from orchestration.lib.settings import Location

SOURCE_TABLES = (
    "system_events",
    "job_heartbeats",
    "content_generation_metadata_comprehensive",
    "posting_attempts",
    "metrics_scraper_runs",
)
# How most of the bot's code reaches the decisions: a view over the comprehensive table.
SOURCE_VIEWS = ("content_metadata",)
PAYLOAD_COLUMNS = ("event_data", "metadata")  # system_events
PAYLOAD_TYPES = ("jsonb", "json")


def source_ddl(kind: str) -> str:
    return resources.files("orchestration.lib.source").joinpath(f"{kind}.sql").read_text()


def create_source_schema(location: Location, *, drop_existing: bool = False, payload_type: str = "jsonb") -> None:
    """Create the source tables (keeping existing ones unless ``drop_existing``).

    ``payload_type`` is the type of system_events' payload columns in a PostgreSQL source the
    call creates: "jsonb" as the bot's migrations leave it, or "json", which keeps the text as
    written (and so holds payloads jsonb refuses, such as the escape \\u0000). Existing tables
    keep their type; DuckDB payloads are always VARCHAR."""
    if payload_type not in PAYLOAD_TYPES:
        raise ValueError(f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}, not {payload_type!r}")
    with connect(location) as conn:
        if drop_existing:
            if not location.is_postgres:  # PostgreSQL's drop table ... cascade takes the views along
                for view in SOURCE_VIEWS:
                    conn.execute(f"drop view if exists {view}")
            for table in SOURCE_TABLES:
                conn.execute(f"drop table if exists {table} cascade" if location.is_postgres
                             else f"drop table if exists {table}")
            if not location.is_postgres:
                conn.execute("drop sequence if exists cgmc_id_seq")
                conn.execute("drop sequence if exists msr_id_seq")
        creates_events = location.is_postgres and not _exists(conn, "system_events")
        conn.execute(source_ddl(location.kind))
        if creates_events and payload_type != "jsonb":
            columns = ", ".join(f"alter column {c} type {payload_type}" for c in PAYLOAD_COLUMNS)
            conn.execute(f"alter table system_events {columns}")


def payload_column_type(location: Location) -> str:
    """The type of system_events.event_data in the source: jsonb, json, or varchar (DuckDB)."""
    with connect(location) as conn:
        row = conn.execute("select lower(data_type) from information_schema.columns "
                           "where table_schema = current_schema() and table_name = 'system_events' "
                           "and column_name = 'event_data'").fetchone()
    if row is None:
        raise LookupError("the source has no system_events.event_data column")
    return "varchar" if row[0] in ("character varying", "text", "varchar") else row[0]


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]
