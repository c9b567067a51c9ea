"""Connections to either kind of location, with the same small surface.

``connect(location)`` returns an object with ``execute(sql, params=None)`` returning a cursor-like
object (``fetchall``/``fetchone``), ``commit()``, ``rollback()`` and ``close()``; it is a context
manager that commits on success and rolls back on error. Bulk paths do not go through here:
they use COPY (psycopg), ADBC or Arrow directly.

Every PostgreSQL session gets the DSN's libpq parameters as given plus the timeouts of
``settings.pg_timeouts`` (``Location.conninfo``). A connection that cannot be opened raises a
:class:`ConnectError` with one line naming the location (password masked) and the reason (TLS
verification, a timeout, a DuckDB file locked by another process) — the driver's own exception,
which could carry more, is not chained.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import psycopg

from orchestration.lib.settings import (
    APPLICATION_NAME,
    Location,
    check_duckdb_folder,
    duckdb_memory_limit,
    duckdb_temp_directory,
    mask_secrets,
    pg_timeouts,
)


class ConnectError(RuntimeError):
    """A connection could not be opened (one line, no secret)."""


class PostgresConnectError(ConnectError, psycopg.OperationalError):
    pass


class DuckDBLockedError(ConnectError, duckdb.IOException):
    """Another process holds the DuckDB file (DuckDB allows one writing process)."""


class DuckDBFileMissing(FileNotFoundError, duckdb.IOException):
    """A read-only open of a DuckDB file that does not exist (opening it read-write would create it)."""


def configure_duckdb(conn: duckdb.DuckDBPyConnection, path: Path | None, memory_limit: str | None = None) -> None:
    """The memory limit (OPS_DUCKDB_MEMORY_LIMIT) and the spill folder (OPS_DUCKDB_TEMP_DIRECTORY,
    else ``<file>.tmp`` beside the file) of every DuckDB connection the project opens: DuckDB's
    default limit is 80 % of RAM, which lets its buffer pool grow with the data it touches. Both
    are settings of the database instance (shared by its connections in this process)."""
    conn.execute(f"set memory_limit = '{memory_limit or duckdb_memory_limit()}'")
    temp = str(duckdb_temp_directory(path))
    current = conn.execute("select current_setting('temp_directory')").fetchall()[0][0]
    if current != temp:  # DuckDB refuses to switch once it has spilled: set only what differs
        try:
            conn.execute("set temp_directory = '" + temp.replace("'", "''") + "'")
        except duckdb.NotImplementedException:  # this instance has spilled already: keep its folder
            pass


def duckdb_memory_connect(memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (a source file is attached to it) with the same limit, and
    a spill folder outside the working directory."""
    conn = duckdb.connect()
    configure_duckdb(conn, None, memory_limit)
    return conn


def duckdb_connect(location: Location, read_only: bool = False,
                   memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """``memory_limit`` overrides OPS_DUCKDB_MEMORY_LIMIT for this database instance."""
    assert location.path is not None
    if read_only and not location.path.is_file():
        raise DuckDBFileMissing(f"DuckDB file {location.path} does not exist (check OPS_WAREHOUSE_URL / "
                                f"OPS_SOURCE_URL, or run the pipeline first)")
    check_duckdb_folder(location.path)
    try:
        conn = duckdb.connect(str(location.path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DuckDBLockedError(duckdb_lock_message(location.path, exc)) from None
        raise
    conn.execute("set timezone = 'UTC'")
    configure_duckdb(conn, location.path, memory_limit)
    return conn


def duckdb_lock_message(path: Path, exc: BaseException) -> str:
    """What holds the file and what to do, in one line."""
    found = re.search(r"held in (.+?) \(PID (\d+)\)", str(exc))
    holder = "another process"
    if found:
        holder = f"process {found.group(2)} ({_command_line(found.group(2)) or found.group(1)})"
    return (f"DuckDB file {path} is locked: {holder} has it open (DuckDB lets one process write a file: a "
            f"running Dagster run, an ops-warehouse command or a DuckDB shell). Wait for it to finish or close "
            f"it, then retry; analysts read the analyst copy instead. [duckdb: Conflicting lock is held]")


def _command_line(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    words = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part).split()
    return mask_secrets(" ".join(words))[:200]


def open_postgres(location: Location, autocommit: bool = False,
                  application_name: str = APPLICATION_NAME) -> psycopg.Connection:
    """A bare psycopg connection with the location's parameters and the session timeouts."""
    try:
        return psycopg.connect(location.conninfo(application_name), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise PostgresConnectError(connect_failure_message(location, exc)) from None


def connect_failure_message(location: Location, exc: BaseException) -> str:
    """One line: the location (password masked), the driver's reason (masked), and a hint."""
    reason = " ".join(mask_secrets(str(exc), location).split())
    low = reason.lower()
    hint = ""
    if "certificate" in low or "ssl" in low or "tls" in low:
        hint = (" — TLS/certificate verification failed or TLS was refused: check sslmode, sslrootcert (the CA "
                "that signed the server's certificate) and that the host name is the certificate's CN/SAN")
    elif "timeout expired" in low:
        hint = (f" — no answer within {pg_timeouts().connect}s (connect_timeout: the DSN's, else "
                f"OPS_PG_CONNECT_TIMEOUT_SECONDS)")
    return f"cannot connect to PostgreSQL {location.redacted()}: {reason}{hint}"


def postgres_connect(location: Location, autocommit: bool = False) -> psycopg.Connection:
    assert location.dsn is not None
    conn = open_postgres(location, autocommit=autocommit)
    conn.execute("set timezone = 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


# ---------------------------------------------------------------------------------------------
# lock waits


LOCK_NOT_AVAILABLE = "55P03"


def is_lock_timeout(exc: BaseException) -> bool:
    """A statement cancelled by lock_timeout (psycopg or ADBC)."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return True
    return getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE or (
        "lock timeout" in str(exc) and "canceling statement" in str(exc))


def lock_holders(location: Location, relations: list[str], schema: str | None = None) -> list[str]:
    """Who else holds locks on these relations (SQL names; unknown ones are skipped) or on any
    relation of ``schema``, as ``relation: <mode> held by pid N (application, user, state) for S s``
    — the locks that block reads and writes if there are any, else all. Best effort: [] when the
    database cannot be asked."""
    try:
        with open_postgres(location, autocommit=True, application_name=f"{APPLICATION_NAME}_lock_probe") as conn:
            rows = conn.execute(
                """select l.relation::regclass::text, l.mode, l.pid, coalesce(a.application_name, ''),
                          coalesce(a.usename::text, ''), coalesce(a.state, ''),
                          round(extract(epoch from now() - coalesce(a.xact_start, a.backend_start)))
                   from pg_locks l left join pg_stat_activity a on a.pid = l.pid
                   where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
                     and (l.relation = any(array(select to_regclass(r) from unnest(%s::text[]) r))
                          or l.relation in (select c.oid from pg_class c join pg_namespace n
                                            on n.oid = c.relnamespace where n.nspname = %s))
                   order by l.pid, 1""",
                (relations, schema)).fetchall()
    except Exception:
        return []
    strong = [r for r in rows if r[1] not in ("AccessShareLock", "RowShareLock", "RowExclusiveLock")]
    return [f"{rel}: {mode} held by pid {pid} ({app or 'no application_name'}, user {user}, {state}) "
            f"for {int(secs or 0)} s" for rel, mode, pid, app, user, state, secs in (strong or rows)]


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
