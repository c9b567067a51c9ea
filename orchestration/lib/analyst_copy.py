"""The analysts' read-only copy of an embedded (DuckDB) warehouse.

DuckDB lets one process write a file, and no other process may open it meanwhile, not even
read-only ("Conflicting lock is held"); an analyst's notebook holding the file open makes the
hourly job fail in turn. So after each run of the main job the warehouse file is published as a
copy that analysts open read-only while the next run writes the main file:

    duckdb.connect("data/warehouse.analyst.duckdb", read_only=True)

The copy is the whole file (every schema: marts, intermediate, staging views, raw, seeds, alerts;
views resolve in the copy as in the main file — the part of a DuckDB file name before its first
dot is its catalog name, so ``warehouse.analyst.duckdb`` is catalog ``warehouse`` again). It is taken
under the main file's write lock after a CHECKPOINT (the WAL merged into the file, and no other
process can write while the bytes are read), written to a temp file in the target's directory,
fsynced and swapped in with ``os.replace``: a reader who opened the previous copy keeps reading
it, a new reader sees the new one, and a failed publish leaves the previous copy in place.

A plain file copy measured 0.15-0.7 s for the demo's 224 MiB warehouse (1.4 M rows) against
3.1 s (and 142 MiB) for DuckDB's ``COPY FROM DATABASE`` into a fresh file.

On a PostgreSQL warehouse there is nothing to publish: analysts connect as the ``ops_analyst``
role, and PostgreSQL readers never block the writer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.lib.db import configure_duckdb
from orchestration.lib.settings import Location

COPY_PATH_ENV = "OPS_ANALYST_COPY_PATH"
LOCK_CONFLICT = "Conflicting lock is held"


class AnalystCopyError(RuntimeError):
    """The copy could not be published; the previous copy (if any) is untouched."""


class WarehouseLocked(RuntimeError):
    """A reader met the writer's lock on the main DuckDB file; the message names the copy."""


@dataclass(frozen=True)
class AnalystCopy:
    """One publish: where the copy is, how long it took and its size; ``skipped`` says why
    nothing was published (a PostgreSQL warehouse)."""

    path: Path | None
    seconds: float
    bytes: int
    skipped: str | None = None

    def summary_line(self) -> str:
        if self.path is None:
            return f"no analyst copy: {self.skipped}"
        return f"analyst copy {self.path}: {self.bytes / 2**20:.1f} MiB in {self.seconds:.2f}s"


def analyst_copy_path(warehouse: Location) -> Path | None:
    """OPS_ANALYST_COPY_PATH, else ``<dir>/<name>.analyst.duckdb`` beside the warehouse file
    (``data/warehouse.duckdb`` -> ``data/warehouse.analyst.duckdb``); None on PostgreSQL."""
    if warehouse.is_postgres:
        return None
    assert warehouse.path is not None
    configured = os.environ.get(COPY_PATH_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    name = warehouse.path.name
    stem = name[: -len(".duckdb")] if name.endswith(".duckdb") else warehouse.path.stem
    return warehouse.path.with_name(f"{stem}.analyst.duckdb")


def publish_analyst_copy(warehouse: Location, target: Path | None = None) -> AnalystCopy:
    """Publish a read-only copy of the DuckDB ``warehouse`` at ``target`` (default
    :func:`analyst_copy_path`), atomically. Idempotent: publishing again with no write in between
    gives the same data. Raises :class:`AnalystCopyError` with the reason on any failure, after
    removing its temp file; a no-op (``skipped``) on PostgreSQL."""
    if warehouse.is_postgres:
        return AnalystCopy(path=None, seconds=0.0, bytes=0,
                           skipped="PostgreSQL warehouse: analysts connect as the ops_analyst role")
    assert warehouse.path is not None
    source = warehouse.path
    target = Path(target).expanduser().resolve() if target is not None else analyst_copy_path(warehouse)
    assert target is not None
    if target == source:
        raise AnalystCopyError(f"the analyst copy path {target} is the warehouse file itself; "
                               f"set {COPY_PATH_ENV} to another file")
    if not source.is_file():
        raise AnalystCopyError(f"no warehouse file at {source}: nothing to publish")
    started = time.perf_counter()
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # the write lock: no other process writes while the bytes are read; CHECKPOINT merges the
        # WAL into the file, so the file alone is the whole database
        conn = duckdb.connect(str(source))
        try:
            configure_duckdb(conn, source)
            conn.execute("checkpoint")
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, length=8 * 2**20)
                dst.flush()
                os.fsync(dst.fileno())
        finally:
            conn.close()
        os.chmod(tmp, 0o444)  # a hint: opening it for writing fails (for users other than root)
        # a WAL left by someone who opened the old copy for writing would be replayed on the new one
        Path(f"{target}.wal").unlink(missing_ok=True)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except (OSError, duckdb.Error) as exc:
        with contextlib.suppress(OSError):  # the cleanup never hides the reason
            tmp.unlink(missing_ok=True)
        raise AnalystCopyError(f"could not publish the analyst copy of {source} to {target} "
                               f"(the previous copy, if any, is unchanged): {_one_line(exc)}") from exc
    return AnalystCopy(path=target, seconds=time.perf_counter() - started, bytes=target.stat().st_size)


def connect_read_only(warehouse: Location, fall_back_to_copy: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the DuckDB warehouse (session in UTC). When a writer holds the
    main file: the analyst copy if ``fall_back_to_copy`` and it exists, else
    :class:`WarehouseLocked` with a one-line message naming the copy to open instead."""
    assert warehouse.path is not None
    try:
        conn = duckdb.connect(str(warehouse.path), read_only=True)
    except duckdb.IOException as exc:
        if LOCK_CONFLICT not in str(exc):
            raise
        copy = analyst_copy_path(warehouse)
        if fall_back_to_copy and copy is not None and copy.is_file():
            conn = duckdb.connect(str(copy), read_only=True)
        else:
            raise WarehouseLocked(locked_message(warehouse)) from None
    conn.execute("set timezone = 'UTC'")
    configure_duckdb(conn, warehouse.path)
    return conn


def locked_message(warehouse: Location) -> str:
    """One line for a reader who met the writer's lock on the main file."""
    copy = analyst_copy_path(warehouse)
    return (f"the warehouse {warehouse.path} is locked by a writer (the hourly job is running); open the analyst "
            f"copy instead: duckdb.connect('{copy}', read_only=True) — published after each run")


def is_lock_conflict(exc: BaseException) -> bool:
    """DuckDB's error when another process holds the file."""
    return isinstance(exc, duckdb.Error) and LOCK_CONFLICT in str(exc)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
