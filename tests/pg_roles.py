"""Test helper: connect to PostgreSQL as one of the least-privilege roles (``ops-warehouse admin
roles``), see what it may do, and drop the roles a test created (they are cluster-global)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg

from orchestration.lib.admin.roles import ROLES, RoleNames


def as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, ""))


def denied(dsn: str, statement: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def rows(dsn: str, statement: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def drop_roles(names: RoleNames, dsns: list[str]) -> None:
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in ROLES:
                if conn.execute("select 1 from pg_roles where rolname = %s", [names.name(role)]).fetchone():
                    conn.execute(f'drop owned by "{names.name(role)}" cascade')
    with psycopg.connect(dsns[0], autocommit=True) as conn:
        for role in ROLES:
            conn.execute(f'drop role if exists "{names.name(role)}"')
