"""Shared fixtures: a real PostgreSQL database per test (created and dropped), temp DuckDB files."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ADMIN_DSN = os.environ.get("OPS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _dsn_for(dbname: str) -> str:
    parts = urlsplit(ADMIN_DSN)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


class PgDatabases:
    """Creates uniquely named databases and drops them all at teardown."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.created: list[str] = []

    def new(self, label: str = "db") -> str:
        name = f"ops_test_{self.prefix}_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"create database {name}")
        self.created.append(name)
        return _dsn_for(name)

    def drop_all(self) -> None:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f"drop database if exists {name} with (force)")


@pytest.fixture
def pg_databases(request) -> Iterator[PgDatabases]:
    dbs = PgDatabases(re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:24])
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="module")
def module_pg_databases(request) -> Iterator[PgDatabases]:
    """Databases shared by one test module (for expensive setups built once)."""
    dbs = PgDatabases(re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())[:24])
    yield dbs
    dbs.drop_all()
