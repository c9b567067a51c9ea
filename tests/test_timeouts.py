"""Timeouts on every session: a lock held on a raw table or on a source table fails the extract
after OPS_PG_LOCK_TIMEOUT_SECONDS with a message naming the lock and the setting (instead of
waiting for ever); statement and connect timeouts apply to psycopg, ADBC and dbt alike; a DuckDB
file held by another process fails at once, naming the process."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest

from orchestration.lib.db import ConnectError, DuckDBLockedError, duckdb_connect, postgres_connect
from orchestration.lib.dbt_env import dbt_env
from orchestration.lib.extract.engine import LockWaitTimeout, extract_all, extract_table
from orchestration.lib.extract.readers import PostgresArrowSession, PostgresCopySession
from orchestration.lib.settings import Location, pg_timeouts
from orchestration.lib.simulator import simulate

END = datetime(2026, 10, 15, tzinfo=timezone.utc)
TABLE = "system_events"


@pytest.fixture(scope="module")
def small_source(module_pg_databases, tmp_path_factory) -> Location:
    source = Location.parse(module_pg_databases.new("src"))
    simulate(source, days=0.5, seed=11, end=END, truth_path=tmp_path_factory.mktemp("truth") / "truth.json")
    return source


def _holding(location: Location, sql: str) -> psycopg.Connection:
    """Another session, holding a lock until closed."""
    conn = psycopg.connect(location.dsn, autocommit=False, application_name="lock_holder_test")
    conn.execute(sql)
    return conn


def test_sessions_get_the_timeouts_from_the_environment(monkeypatch, small_source):
    monkeypatch.setenv("OPS_PG_STATEMENT_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("OPS_PG_CONNECT_TIMEOUT_SECONDS", "7")
    settings_sql = ("select current_setting('statement_timeout'), current_setting('lock_timeout'), "
                    "current_setting('application_name')")
    conn = postgres_connect(small_source)
    assert conn.execute(settings_sql).fetchone() == ("2500ms", "1500ms", "ops_warehouse")
    assert conn.info.get_parameters()["connect_timeout"] == "7"
    conn.close()
    for session_type in (PostgresCopySession, PostgresArrowSession):
        session = session_type(small_source)
        try:
            assert tuple(session.rows(settings_sql)[0][:2]) == ("2500ms", "1500ms"), session_type
        finally:
            session.close()
    env = dbt_env(small_source)
    assert env["PGOPTIONS"] == "-c statement_timeout=2500 -c lock_timeout=1500 -c jit=off"
    assert env["OPS_WAREHOUSE_PG_CONNECT_TIMEOUT"] == "7"
    # the DSN's own options come after ours, so they win; 0 turns a timeout off
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "0")
    own = Location.parse(small_source.dsn + "?options=-c%20statement_timeout%3D42s")
    conn = postgres_connect(own)
    assert conn.execute(settings_sql).fetchone()[:2] == ("42s", "0")
    conn.close()


def test_statement_timeout_cancels_a_long_statement(monkeypatch, small_source):
    monkeypatch.setenv("OPS_PG_STATEMENT_TIMEOUT_SECONDS", "1")
    conn = postgres_connect(small_source, autocommit=True)
    started = time.perf_counter()
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        conn.execute("select pg_sleep(5)")
    assert time.perf_counter() - started < 4
    conn.close()


def test_settings_refuse_a_nonsense_timeout(monkeypatch):
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "-1")
    with pytest.raises(ValueError, match="OPS_PG_LOCK_TIMEOUT_SECONDS must be >= 0"):
        pg_timeouts()
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ValueError, match="OPS_PG_LOCK_TIMEOUT_SECONDS must be a number"):
        pg_timeouts()


def test_connect_timeout_gives_up_on_a_server_that_never_answers(monkeypatch):
    monkeypatch.setenv("OPS_PG_CONNECT_TIMEOUT_SECONDS", "2")  # libpq's minimum
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts the TCP connection, never says a word
    port = listener.getsockname()[1]
    try:
        started = time.perf_counter()
        with pytest.raises(ConnectError) as failure:
            postgres_connect(Location.parse(f"postgresql://u:S3cr3t-never@127.0.0.1:{port}/db"))
        assert time.perf_counter() - started < 8
        message = str(failure.value)
        assert "timeout expired" in message and "OPS_PG_CONNECT_TIMEOUT_SECONDS" in message, message
        assert "S3cr3t-never" not in message
    finally:
        listener.close()


def _extract_in_thread(source: Location, warehouse: Location) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def work():
        started = time.perf_counter()
        try:
            extract_table(source, warehouse, TABLE)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc
        out["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, out


def _assert_gives_up(source, warehouse, expect: list[str]) -> str:
    thread, out = _extract_in_thread(source, warehouse)
    thread.join(30)
    assert not thread.is_alive(), "the extract still waits for the lock"
    error = out.get("error")
    assert isinstance(error, LockWaitTimeout), repr(error)
    message = str(error)
    assert out["seconds"] < 15, out
    for part in ["OPS_PG_LOCK_TIMEOUT_SECONDS", "waited 1.5 s", *expect]:
        assert part in message, (part, message)
    return message


def test_a_lock_held_on_a_raw_table_fails_the_extract_after_the_lock_timeout(monkeypatch, small_source,
                                                                              pg_databases):
    warehouse = Location.parse(pg_databases.new("wh"))
    extract_all(small_source, warehouse, tables=[TABLE])  # the raw tables exist
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "1.5")
    holder = _holding(warehouse, f"lock table raw.{TABLE} in access exclusive mode")
    try:
        message = _assert_gives_up(small_source, warehouse, [
            f"warehouse raw.{TABLE}: AccessExclusiveLock held by pid {holder.info.backend_pid}", "lock_holder_test"])
    finally:
        holder.close()
    assert "\n" not in message
    assert extract_table(small_source, warehouse, TABLE).table == TABLE  # released: the next run goes through


@pytest.mark.parametrize("warehouse_kind", ["postgres", "duckdb"])
def test_a_lock_held_on_a_source_table_fails_the_extract_after_the_lock_timeout(monkeypatch, small_source,
                                                                                 pg_databases, tmp_path,
                                                                                 warehouse_kind):
    # PostgreSQL warehouse: psycopg's COPY session; DuckDB warehouse: the ADBC session
    warehouse = Location.parse(pg_databases.new("wh") if warehouse_kind == "postgres"
                               else str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "1.5")
    holder = _holding(small_source, f"lock table {TABLE} in access exclusive mode")
    try:
        _assert_gives_up(small_source, warehouse, [
            f"source {TABLE}: AccessExclusiveLock held by pid {holder.info.backend_pid}"])
    finally:
        holder.close()


def test_a_concurrent_extract_of_the_same_table_is_named(monkeypatch, small_source, pg_databases):
    warehouse = Location.parse(pg_databases.new("wh"))
    extract_all(small_source, warehouse, tables=[TABLE])
    monkeypatch.setenv("OPS_PG_LOCK_TIMEOUT_SECONDS", "1.5")
    holder = _holding(warehouse, f"select pg_advisory_xact_lock(hashtext('ops_extract:{TABLE}'))")
    try:
        _assert_gives_up(small_source, warehouse, [f"another extract of {TABLE} is running"])
    finally:
        holder.close()


def test_a_duckdb_file_held_by_another_process_fails_at_once_naming_it(tmp_path):
    path = tmp_path / "wh.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        with pytest.raises(DuckDBLockedError) as locked:
            duckdb_connect(Location.parse(str(path)))
        assert time.perf_counter() - started < 5
        message = str(locked.value)
        assert f"process {holder.pid}" in message and "Wait for it to finish" in message, message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()
