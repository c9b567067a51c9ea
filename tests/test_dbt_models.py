"""The dbt project on both warehouse targets (DuckDB file and PostgreSQL database).

One module-scoped fixture per target builds a fresh warehouse, lands hand-made ``raw`` rows
covering the source quirks (both payload columns, NULL / notice / high / deadlock severities, a
deleted event, the ``failed`` status, …), runs ``dbt build`` (models, data tests; the unit tests run in tests/test_template_marts.py),
then adds rows (new, late-loaded with an old created_at, newly deleted) and runs ``dbt build``
again, so the incremental ``fct_system_events`` is checked after both runs. The two targets
run their dbt calls concurrently. PostgreSQL runs with a non-UTC client time zone (PGTZ) to
show that no result depends on the session time zone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import duckdb
import psycopg
import pytest

from orchestration.lib.extract.raw_schema import all_raw_ddl

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
PG_ADMIN_DSN = os.environ.get("OPS_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

AS_OF = "2024-05-08T12:00:00+00:00"
UTC = dt.timezone.utc


def ts(value: str) -> dt.datetime:
    """ISO text → aware datetime (UTC unless the text carries an offset)."""
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


LOAD_1 = ts("2024-05-08T11:00:00")  # _loaded_at of the first extraction
LOAD_2 = ts("2024-05-08T11:30:00")  # _loaded_at of the second extraction


# --------------------------------------------------------------------------------------------
# Hand-made raw rows
# --------------------------------------------------------------------------------------------

def _event(
    id_: str,
    event_type: str,
    created_at: str,
    severity: str | None,
    *,
    event_data: dict | None = None,
    metadata: dict | None = None,
    message: str | None = None,
    component: str | None = None,
    loaded_at: dt.datetime = LOAD_1,
    deleted_at: dt.datetime | None = None,
) -> dict[str, Any]:
    created = ts(created_at)
    return {
        "id": id_,
        "event_type": event_type,
        "event_data": None if event_data is None else json.dumps(event_data),
        "metadata": None if metadata is None else json.dumps(metadata),
        "severity": severity,
        "message": message,
        "component": component,
        "timestamp": created,
        "created_at": created,
        "_loaded_at": loaded_at,
        "_row_hash": f"h-{id_}",
        "_deleted_at": deleted_at,
    }


def first_load_rows() -> dict[str, list[dict[str, Any]]]:
    events = [
        _event("e01", "POST_FAILED", "2024-05-07T10:00:00", "error",
               event_data={"error": "Timeout 30000ms exceeded", "error_code": "PLAYWRIGHT_TIMEOUT",
                           "decision_id": "d1", "tweet_id": "1790000000000000001",
                           "stack": "Error: Timeout\n    at post (poster.ts:12)"},
               message="Post failed for decision d1"),
        # payload only under metadata; severity in upper case with blanks: not in the checklist
        _event("e02", "POST_FAILED", "2024-05-07T23:30:00", " ERROR ",
               metadata={"error_message": "rate limited", "error_code": "RATE_LIMITED_429"},
               message="Post failed (429)"),
        _event("e03", "POST_FAILED", "2024-05-06T00:15:00", "error",
               event_data={"error": "AUTH_REQUIRED"}, message="Post failed: auth"),
        _event("e04", "posting_job_execution_failed", "2024-05-08T11:59:00", "error",
               event_data={"job_name": "posting", "phase": "run", "error": "boom",
                           "stack_trace": "Error: boom\n    at run (jobs.ts:1)"},
               message="Job posting failed"),
        _event("e05", "plan_consecutive_failures", "2024-05-05T08:00:00", "critical",
               event_data={"consecutive_failures": 3}, message="plan failed 3 times in a row"),
        # ErrorTracker: component, error_message and context in the payload; severity `high`
        _event("e06", "error_null_tweet_id", "2024-05-07T12:00:00", "high",
               event_data={"component": "posting", "error_type": "null_tweet_id",
                           "error_message": "tweet id missing after post",
                           "context": {"decision_id": "d2", "retry_count": 1, "tweet_id": "t-ctx",
                                       "stack": "ctx stack"}},
               message="NULL tweet_id"),
        _event("e07", "circuit_breaker_stuck", "2024-05-07T13:00:00", "fatal",
               component="truth_integrity", event_data={"component": "payload-component"},
               message="breaker open 42 min"),
        # deleted in the source (a guard removes recent verification_failed rows)
        _event("e08", "verification_failed", "2024-05-07T14:00:00", "error",
               event_data={"error": "verification mismatch"}, deleted_at=LOAD_1),
        _event("e09", "POSTING_QUEUE_BLOCKED", "2024-05-07T15:00:00", "warning",
               event_data={"reason": "CIRCUIT_BREAKER"}),
        _event("e10", "POST_SUCCESS", "2024-05-07T16:00:00", None),
        _event("e11", "DB_WRITE_FAILED", "2024-05-07T17:00:00", "deadlock",
               event_data={"original_error": "deadlock detected", "primary_error": "pe"}),
        _event("e12", "EXECUTOR_HEALTH_OK", "2024-05-07T18:00:00", "notice",
               event_data={"browser_pool_queue_len": 0}),
        _event("e13", "MEMORY_WATCHDOG_CLEANUP", "2024-05-07T19:00:00", "warn",
               event_data={"rss_mb": 512}),
        # window bounds: (as_of - 7 days, as_of]
        _event("e14", "POST_FAILED", "2024-05-01T12:00:00", "error", event_data={"error": "at start"}),
        _event("e15", "POST_FAILED", "2024-05-01T12:00:01", "error", event_data={"error": "just in"}),
        _event("e16", "POST_FAILED", "2024-05-08T12:00:01", "error", event_data={"error": "after as_of"}),
        # both payload columns: event_data wins
        _event("e17", "REPLY_FAILED", "2024-05-04T23:30:00", "error",
               event_data={"error": "from event_data"}, metadata={"error": "from metadata"}),
        # error key precedence: an empty `error` does not hide the next keys
        _event("e18", "REPLY_FAILED", "2024-05-05T00:30:00", "critical",
               event_data={"error": "", "last_error": "le", "original_error": "oe",
                           "permit_error": "pme"}),
        _event("e19", "timer_fired", "2024-05-07T20:00:00", "info", event_data={"job_name": "reply_posting"}),
        # 23:30 in New York is the next day in UTC: days are UTC days
        _event("e20", "REPLY_FAILED", "2024-05-04T23:30:00-04:00", "error",
               event_data={"permit_error": "permit expired"}),
        # payload that is valid JSON but not an object
        _event("e21", "EXECUTOR_DAEMON_TICK", "2024-05-07T21:00:00", "info", event_data=[1, 2, 3]),  # type: ignore[arg-type]
    ]
    heartbeats = [
        {"job_name": "posting", "last_success": ts("2024-05-08T11:55:00"), "last_failure": ts("2024-05-08T11:50:00"),
         "last_run_status": "success", "last_error": None, "consecutive_failures": 0,
         "updated_at": ts("2024-05-08T11:55:00"), "_loaded_at": LOAD_1, "_row_hash": "hb-posting"},
        {"job_name": "plan", "last_success": ts("2024-05-08T08:00:00"), "last_failure": ts("2024-05-08T11:00:00"),
         "last_run_status": "failed", "last_error": "LLM timeout", "consecutive_failures": 3,
         "updated_at": ts("2024-05-08T11:00:00"), "_loaded_at": LOAD_1, "_row_hash": "hb-plan"},
        {"job_name": "reply_posting", "last_success": None, "last_failure": None,
         "last_run_status": "running", "last_error": None, "consecutive_failures": None,
         "updated_at": ts("2024-05-08T11:30:00"), "_loaded_at": LOAD_1, "_row_hash": "hb-reply"},
    ]
    snapshots = [
        {"job_name": "plan", "last_success": ts("2024-05-08T08:00:00"), "last_failure": None,
         "last_run_status": "success", "last_error": None, "consecutive_failures": 0,
         "updated_at": ts("2024-05-08T08:00:00"), "_observed_at": ts("2024-05-08T08:05:00"), "_row_hash": "s1"},
        {"job_name": "plan", "last_success": ts("2024-05-08T08:00:00"), "last_failure": ts("2024-05-08T11:00:00"),
         "last_run_status": "failed", "last_error": "LLM timeout", "consecutive_failures": 3,
         "updated_at": ts("2024-05-08T11:00:00"), "_observed_at": ts("2024-05-08T11:05:00"), "_row_hash": "s2"},
        {"job_name": "posting", "last_success": ts("2024-05-08T11:55:00"), "last_failure": None,
         "last_run_status": "Success", "last_error": None, "consecutive_failures": 0,
         "updated_at": ts("2024-05-08T11:55:00"), "_observed_at": ts("2024-05-08T11:56:00"), "_row_hash": "s3"},
    ]
    decisions = [
        {"id": 1, "decision_id": "d1", "decision_type": "single", "status": "posted",
         "scheduled_at": ts("2024-05-07T09:00:00"), "posted_at": ts("2024-05-07T09:01:00"), "tweet_id": None,
         "thread_tweet_ids": None, "target_tweet_id": None, "skip_reason": None, "error_message": None,
         "features": json.dumps({"retry_count": 2, "generator": "g1"}), "is_test_post": False,
         "created_at": ts("2024-05-07T08:00:00"), "updated_at": ts("2024-05-07T09:01:00"),
         "_loaded_at": LOAD_1, "_row_hash": "d-1"},
        {"id": 2, "decision_id": "d2", "decision_type": "reply", "status": " Posted",
         "scheduled_at": ts("2024-05-07T10:00:00"), "posted_at": ts("2024-05-07T10:02:00"),
         "tweet_id": "1790000000000000002", "thread_tweet_ids": None, "target_tweet_id": "1780000000000000000",
         "skip_reason": None, "error_message": None, "features": json.dumps({"retry_count": "x"}),
         "is_test_post": None, "created_at": ts("2024-05-07T09:30:00"), "updated_at": ts("2024-05-07T10:02:00"),
         "_loaded_at": LOAD_1, "_row_hash": "d-2"},
        {"id": 3, "decision_id": "d3", "decision_type": "thread", "status": "queued",
         "scheduled_at": ts("2024-05-08T13:00:00"), "posted_at": None, "tweet_id": None,
         "thread_tweet_ids": "[]", "target_tweet_id": None, "skip_reason": None, "error_message": None,
         "features": None, "is_test_post": True, "created_at": ts("2024-05-08T10:00:00"),
         "updated_at": ts("2024-05-08T10:00:00"), "_loaded_at": LOAD_1, "_row_hash": "d-3"},
    ]
    attempts = [
        {"id": "a1", "job_type": "posting", "decision_id": "d1", "target_tweet_id": None, "tweet_id": None,
         "status": "failed", "error_message": "Timeout", "metrics": json.dumps({"compose_ms": 1200}),
         "created_at": ts("2024-05-07T09:00:30"), "_loaded_at": LOAD_1, "_row_hash": "a-1"},
        {"id": "a2", "job_type": "reply", "decision_id": "d2", "target_tweet_id": "1780000000000000000",
         "tweet_id": "1790000000000000002", "status": "success", "error_message": None, "metrics": None,
         "created_at": ts("2024-05-07T10:01:00"), "_loaded_at": LOAD_1, "_row_hash": "a-2"},
        {"id": "a3", "job_type": "reply", "decision_id": "d2", "target_tweet_id": None, "tweet_id": None,
         "status": "post_succeeded_db_write_failed", "error_message": "db write failed", "metrics": None,
         "created_at": ts("2024-05-07T10:03:00"), "_loaded_at": LOAD_1, "_row_hash": "a-3"},
    ]
    scraper_runs = [
        {"id": 1, "run_at": ts("2024-05-08T10:00:00"), "runner_mode": True, "status": "completed",
         "eligible_count": 10, "scraped_count": 9, "updated_count": 9, "skipped_count": 1, "failed_count": 0,
         "duration_ms": 15000, "skip_reason": None, "error_message": None,
         "_loaded_at": LOAD_1, "_row_hash": "m-1"},
        {"id": 2, "run_at": ts("2024-05-08T10:20:00"), "runner_mode": False, "status": "skipped_not_runner",
         "eligible_count": 0, "scraped_count": 0, "updated_count": 0, "skipped_count": 0, "failed_count": 0,
         "duration_ms": 3, "skip_reason": "not runner", "error_message": None,
         "_loaded_at": LOAD_1, "_row_hash": "m-2"},
    ]
    quarantine = [
        {"source_table": "system_events", "row_key": "bad-1", "reason": "invalid_json:event_data",
         "row_data": '{"id": "bad-1", "event_data": "{not json"}', "_row_hash": "q-1",
         "first_seen_at": LOAD_1, "last_seen_at": LOAD_1},
    ]
    return {
        "system_events": events,
        "job_heartbeats": heartbeats,
        "job_heartbeat_snapshots": snapshots,
        "content_generation_metadata_comprehensive": decisions,
        "posting_attempts": attempts,
        "metrics_scraper_runs": scraper_runs,
        "_quarantine": quarantine,
    }


def second_load_new_events() -> list[dict[str, Any]]:
    return [
        # a new error in the window
        _event("n1", "POST_FAILED", "2024-05-08T11:40:00", "error",
               event_data={"error": "new failure"}, loaded_at=LOAD_2),
        # committed late: old created_at, loaded by the second extraction
        _event("n2", "POST_FAILED", "2024-05-03T09:00:00", "error",
               event_data={"error": "late row"}, loaded_at=LOAD_2),
        # committed after the first dbt run but stamped 1 h before its watermark: inside the lookback
        _event("n3", "REPLY_FAILED", "2024-05-08T10:00:00", "error",
               event_data={"error": "inside lookback"}, loaded_at=LOAD_1 - dt.timedelta(hours=1)),
        # stamped 5 h before the watermark: outside the 3 h lookback, so an incremental run skips it
        _event("n4", "REPLY_FAILED", "2024-05-08T06:00:00", "error",
               event_data={"error": "outside lookback"}, loaded_at=LOAD_1 - dt.timedelta(hours=5)),
    ]


# e03 vanished from the source between the two extractions: the extractor marks it deleted
DELETED_IN_SECOND_LOAD = "e03"


# --------------------------------------------------------------------------------------------
# Warehouses
# --------------------------------------------------------------------------------------------

class Warehouse:
    """A raw schema + dbt target on one backend, with the few SQL helpers the tests need."""

    target: str

    def execute(self, sql: str, params: list[tuple] | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def query(self, sql: str) -> list[tuple]:  # pragma: no cover
        raise NotImplementedError

    def env(self) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def create_raw(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        for ddl in all_raw_ddl(postgres=self.target == "postgres"):
            self.execute(ddl)
        for table, table_rows in rows.items():
            self.insert(table, table_rows)

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        # only the columns the raw DDL has (bookkeeping columns differ between tables)
        present = {r[0] for r in self.query(
            "select column_name from information_schema.columns "
            f"where table_schema = 'raw' and table_name = '{table}'"
        )}
        cols = [c for c in rows[0] if c in present]
        col_sql = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join([self.mark] * len(cols))
        self.execute(
            f"insert into raw.{table} ({col_sql}) values ({marks})",
            [tuple(r[c] for c in cols) for r in rows],
        )

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(_normalise(v) for v in row) for row in self.query(sql)]

    def dicts(self, relation: str, order_by: str) -> list[dict[str, Any]]:
        cols = [r[0] for r in self.query(
            "select column_name from information_schema.columns "
            f"where table_schema = '{relation.split('.')[0]}' and table_name = '{relation.split('.')[1]}' "
            "order by ordinal_position"
        )]
        data = self.rows(f"select {', '.join(cols)} from {relation} order by {order_by}")
        return [dict(zip(cols, row)) for row in data]


class DuckDBWarehouse(Warehouse):
    target = "duckdb"
    mark = "?"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path))
        con.execute("set timezone = 'UTC'")
        return con

    def execute(self, sql: str, params: list[tuple] | None = None) -> None:
        with self._connect() as con:
            if params:
                con.executemany(sql, params)
            else:
                con.execute(sql)

    def query(self, sql: str) -> list[tuple]:
        with self._connect() as con:
            return con.execute(sql).fetchall()

    def env(self) -> dict[str, str]:
        return {"OPS_WAREHOUSE_DUCKDB_PATH": str(self.path)}


class PostgresWarehouse(Warehouse):
    target = "postgres"
    mark = "%s"

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self.dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + dbname

    def execute(self, sql: str, params: list[tuple] | None = None) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as con:
            if params:
                con.cursor().executemany(sql, params)
            else:
                con.execute(sql)

    def query(self, sql: str) -> list[tuple]:
        with psycopg.connect(self.dsn) as con:
            return con.execute(sql).fetchall()

    def env(self) -> dict[str, str]:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        return {
            "OPS_WAREHOUSE_PG_HOST": str(info.get("host", "127.0.0.1")),
            "OPS_WAREHOUSE_PG_PORT": str(info.get("port", "5432")),
            "OPS_WAREHOUSE_PG_USER": str(info.get("user", "postgres")),
            "OPS_WAREHOUSE_PG_PASSWORD": str(info.get("password", "")),
            "OPS_WAREHOUSE_PG_DBNAME": self.dbname,
            # a client time zone far from UTC: results must not depend on it
            "PGTZ": "Asia/Kathmandu",
        }


def _normalise(value: Any) -> Any:
    """Make values from the two drivers comparable."""
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --------------------------------------------------------------------------------------------
# dbt
# --------------------------------------------------------------------------------------------

def run_dbt(args: list[str], target: str, target_env: dict[str, str], work: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **target_env,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "PATH": f"{DBT.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
        str(DBT), *args,
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target", target,
        # private target/log dirs: other test modules may run dbt in the same project concurrently
        "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
    ]
    return subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=600)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"dbt failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"


class Built:
    """A warehouse with its outputs captured after the first and after the second dbt build."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.runs: list[subprocess.CompletedProcess] = []
        self.after_first: dict[str, list[dict[str, Any]]] = {}
        self.after_second: dict[str, list[dict[str, Any]]] = {}
        self.checklist_first: list[tuple] = []
        self.checklist_second: list[tuple] = []
        self.aggregates_incremental: dict[str, list[dict[str, Any]]] = {}
        self.aggregates_rebuilt: dict[str, list[dict[str, Any]]] = {}


# the rolling hourly aggregates (incremental by touched hour) and their grain
HOURLY_AGGREGATES = {
    "intermediate.int_error_family_hours": "hour_start, error_family, error_category, component, event_type",
    "intermediate.int_contract_hours": "hour_start, family, writer, payload_column, rule_id, required_field, event_type",
    "intermediate.int_executor_health_hours": "hour_start",
}


def hourly_aggregates(warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    """Their rows without the watermark column, and without the marker rows an incremental run
    leaves for an hour it emptied (a full build has none)."""
    out = {}
    for relation, grain in HOURLY_AGGREGATES.items():
        rows = warehouse.dicts(relation, grain)
        out[relation] = [{k: v for k, v in r.items() if k != "source_loaded_through"}
                         for r in rows if r.get("n_events", r.get("n_samples")) != 0]
    return out


def snapshot(warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    return {
        "fct_system_events": warehouse.dicts("marts.fct_system_events", "event_id"),
        "mart_error_frequency": warehouse.dicts("marts.mart_error_frequency", "event_type"),
        "stg_ops__system_events": warehouse.dicts("staging.stg_ops__system_events", "event_id"),
        "stg_ops__job_heartbeats": warehouse.dicts("staging.stg_ops__job_heartbeats", "job_name"),
        "stg_ops__job_heartbeat_snapshots": warehouse.dicts(
            "staging.stg_ops__job_heartbeat_snapshots", "job_name, observed_at"),
        "stg_ops__decisions": warehouse.dicts("staging.stg_ops__decisions", "decision_id"),
        "stg_ops__posting_attempts": warehouse.dicts("staging.stg_ops__posting_attempts", "attempt_id"),
        "stg_ops__metrics_scraper_runs": warehouse.dicts("staging.stg_ops__metrics_scraper_runs", "scraper_run_id"),
        "stg_ops__quarantine": warehouse.dicts("staging.stg_ops__quarantine", "quarantine_id"),
    }


def build_twice(built: Built, work: Path) -> None:
    """First build, capture, land the second extraction, incremental build, capture."""
    wh = built.warehouse
    wh.create_raw(first_load_rows())
    # the lookback is pinned: these hand-made rows are stamped relative to a 3 h lookback.
    # The models reading the mined templates (tag after_templates) need the miner between two
    # dbt builds (orchestration.lib.build.build_marts); tests/test_template_marts.py covers them.
    # dbt's unit tests run once per target in the shared month's build (tests/test_template_marts.py)
    vars_arg = ["--vars", json.dumps({"as_of": AS_OF, "fct_lookback_hours": 3}), "--exclude", "tag:after_templates",
                "--exclude-resource-type", "unit_test"]
    first = run_dbt(["build", *vars_arg], wh.target, wh.env(), work)
    built.runs.append(first)
    if first.returncode != 0:
        return
    built.after_first = snapshot(wh)
    built.checklist_first = checklist_rows(wh)

    wh.insert("system_events", second_load_new_events())
    wh.execute(
        f"update raw.system_events set _deleted_at = {wh.mark}, _loaded_at = {wh.mark} where id = {wh.mark}",
        [(LOAD_2, LOAD_2, DELETED_IN_SECOND_LOAD)],
    )
    second = run_dbt(["build", *vars_arg], wh.target, wh.env(), work)
    built.runs.append(second)
    if second.returncode != 0:
        return
    built.after_second = snapshot(wh)
    # n4 was loaded with a watermark older than the lookback: the incremental run skipped it
    built.checklist_second = checklist_rows(wh, exclude_ids=("n4",))
    # the hourly aggregates as the incremental run left them, then rebuilt from the same fact
    built.aggregates_incremental = hourly_aggregates(wh)
    rebuilt = run_dbt(["run", "--full-refresh", "--select", *(r.split(".")[1] for r in HOURLY_AGGREGATES),
                       "--vars", json.dumps({"as_of": AS_OF})], wh.target, wh.env(), work)
    built.runs.append(rebuilt)
    if rebuilt.returncode == 0:
        built.aggregates_rebuilt = hourly_aggregates(wh)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = f"ops_test_dbt_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment without PostgreSQL
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(f'create database "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> dict[str, Built]:
    """Both targets, built twice each; the two targets run concurrently."""
    root = tmp_path_factory.mktemp("dbt")
    targets = {
        "duckdb": Built(DuckDBWarehouse(root / "warehouse.duckdb")),
        "postgres": Built(PostgresWarehouse(pg_database)),
    }
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            (root / name).mkdir()
            build_twice(targets[name], root / name)
        except BaseException as exc:  # noqa: BLE001 - reported by the tests below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return targets


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def built(request: pytest.FixtureRequest, builds: dict[str, Built]) -> Built:
    b = builds[request.param]
    for run in b.runs:
        assert_ok(run)
    assert len(b.runs) == 3
    return b


def by_id(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows}


# --------------------------------------------------------------------------------------------
# dbt parse without a database
# --------------------------------------------------------------------------------------------

def test_dbt_parse_needs_no_database(tmp_path: Path) -> None:
    """What dagster-dbt does at load time: parse with no warehouse reachable (both targets)."""
    envs = {
        "duckdb": {"OPS_WAREHOUSE_DUCKDB_PATH": str(tmp_path / "absent" / "warehouse.duckdb")},
        "postgres": {"OPS_WAREHOUSE_PG_HOST": "127.0.0.1", "OPS_WAREHOUSE_PG_PORT": "1",  # nothing listens
                     "OPS_WAREHOUSE_PG_DBNAME": "ops_database_that_does_not_exist"},
    }
    results: dict[str, subprocess.CompletedProcess] = {}

    def parse(target: str) -> None:
        (tmp_path / target).mkdir()
        results[target] = run_dbt(["parse"], target, envs[target], tmp_path / target)

    threads = [threading.Thread(target=parse, args=(t,)) for t in envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for target in envs:
        assert_ok(results[target])
        manifest = json.loads((tmp_path / target / "target" / "manifest.json").read_text())
        models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
        assert set(models) >= {
            "stg_ops__system_events", "stg_ops__job_heartbeats", "stg_ops__job_heartbeat_snapshots",
            "stg_ops__decisions", "stg_ops__posting_attempts", "stg_ops__metrics_scraper_runs",
            "stg_ops__quarantine", "int_error_events", "fct_system_events", "mart_error_frequency",
        }
        assert {n: m["schema"] for n, m in models.items() if n in (
            "stg_ops__system_events", "int_error_events", "fct_system_events", "mart_error_frequency")} == {
            "stg_ops__system_events": "staging", "int_error_events": "intermediate",
            "fct_system_events": "marts", "mart_error_frequency": "marts",
        }
        assert all(m["description"] for m in models.values()), "every model is documented"
        assert len(manifest["unit_tests"]) >= 10
        sources = {n["name"] for n in manifest["sources"].values()}
        assert "_quarantine" in sources and "system_events" in sources
        # no warnings (e.g. unused config paths, deprecated yml keys)
        assert "[WARNING]" not in results[target].stdout.replace("\x1b[33m", "").replace("\x1b[0m", "")
    assert not (tmp_path / "absent").exists()


# --------------------------------------------------------------------------------------------
# The build itself
# --------------------------------------------------------------------------------------------

def test_build_runs_models_and_tests(built: Built) -> None:
    out = built.runs[0].stdout
    assert "Completed successfully" in out
    assert "START test " in out and "START unit_test " not in out  # unit tests: tests/test_template_marts.py
    for run in built.runs:
        assert " ERROR=0 " in run.stdout.replace("\x1b", "")


def test_postgres_tables_get_statistics_when_built(builds: dict[str, Built]) -> None:
    """The post-hook ops_analyze_if_postgres: a table model (rebuilt every run) and an incremental
    model built in full have planner statistics after the build; views get none."""
    wh = builds["postgres"].warehouse
    analyzed = {table for (table,) in wh.query(
        "select distinct tablename from pg_stats where schemaname in ('marts', 'intermediate')")}
    assert {"fct_system_events", "mart_error_frequency", "int_events_classified"} <= analyzed
    views = {name for (name,) in wh.query("select table_name from information_schema.views "
                                          "where table_schema in ('marts', 'intermediate')")}
    assert views and not views & analyzed


# --------------------------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------------------------

def test_stg_system_events_severity_and_payload(built: Built) -> None:
    ev = by_id(built.after_first["stg_ops__system_events"], "event_id")
    expected_severity = {
        "e01": "error", "e02": "error", "e05": "critical", "e06": "error", "e07": "critical",
        "e09": "warning", "e10": "unknown", "e11": "error", "e12": "info", "e13": "warning",
        "e19": "info",
    }
    assert {k: ev[k]["severity"] for k in expected_severity} == expected_severity
    assert ev["e02"]["severity_raw"] == " ERROR "
    assert ev["e10"]["severity_raw"] is None

    assert ev["e01"]["payload_column"] == "event_data"
    assert ev["e02"]["payload_column"] == "metadata"
    assert ev["e02"]["error_text"] == "rate limited"
    assert ev["e02"]["error_code"] == "RATE_LIMITED_429"
    assert ev["e10"]["payload_column"] is None and ev["e10"]["payload"] is None
    assert ev["e17"]["payload_column"] == "event_data"
    assert ev["e17"]["error_text"] == "from event_data"
    assert ev["e17"]["payload"] == {"error": "from event_data"}
    assert ev["e21"]["payload"] == [1, 2, 3] and ev["e21"]["error_text"] is None


def test_stg_system_events_extracted_fields(built: Built) -> None:
    ev = by_id(built.after_first["stg_ops__system_events"], "event_id")
    # job names: parsed out of the event type, else from the payload
    assert ev["e04"]["job_name"] == "posting"
    assert ev["e05"]["job_name"] == "plan"
    assert ev["e19"]["job_name"] == "reply_posting"
    assert ev["e01"]["job_name"] is None
    # error text key precedence and the stack keys
    assert ev["e01"]["error_text"] == "Timeout 30000ms exceeded"
    assert ev["e01"]["stack"].startswith("Error: Timeout")
    assert ev["e04"]["stack"].startswith("Error: boom")
    assert ev["e06"]["error_text"] == "tweet id missing after post"
    assert ev["e06"]["stack"] == "ctx stack"
    assert ev["e11"]["error_text"] == "deadlock detected"
    assert ev["e18"]["error_text"] == "le"
    assert ev["e20"]["error_text"] == "permit expired"
    # ids from the payload or from ErrorTracker's context
    assert (ev["e01"]["decision_id"], ev["e01"]["tweet_id"]) == ("d1", "1790000000000000001")
    assert (ev["e06"]["decision_id"], ev["e06"]["tweet_id"]) == ("d2", "t-ctx")
    assert ev["e01"]["error_code"] == "PLAYWRIGHT_TIMEOUT"
    assert ev["e09"]["reason"] == "CIRCUIT_BREAKER"
    assert ev["e06"]["error_type"] == "null_tweet_id"
    # component: the column first, then the payload
    assert ev["e07"]["component"] == "truth_integrity"
    assert ev["e06"]["component"] == "posting"
    # deletion flag
    assert ev["e08"]["is_deleted"] is True and ev["e08"]["deleted_at"] == LOAD_1
    assert ev["e01"]["is_deleted"] is False


def test_stg_job_heartbeats_and_snapshots(built: Built) -> None:
    hb = by_id(built.after_first["stg_ops__job_heartbeats"], "job_name")
    assert hb["plan"]["last_run_status"] == "failure"
    assert hb["plan"]["last_run_status_raw"] == "failed"
    assert hb["posting"]["last_run_status"] == "success"
    assert hb["reply_posting"]["consecutive_failures"] == 0
    assert hb["plan"]["last_failure_at"] == ts("2024-05-08T11:00:00")

    snaps = built.after_first["stg_ops__job_heartbeat_snapshots"]
    assert [(s["job_name"], s["last_run_status"]) for s in snaps] == [
        ("plan", "success"), ("plan", "failure"), ("posting", "success"),
    ]
    assert len({s["heartbeat_snapshot_id"] for s in snaps}) == 3


def test_stg_decisions_attempts_runs_quarantine(built: Built) -> None:
    d = by_id(built.after_first["stg_ops__decisions"], "decision_id")
    assert d["d1"]["is_null_tweet_id"] is True
    assert d["d2"]["is_null_tweet_id"] is False and d["d2"]["status"] == "posted"
    assert d["d3"]["is_null_tweet_id"] is False
    assert (d["d1"]["retry_count"], d["d2"]["retry_count"], d["d3"]["retry_count"]) == (2, None, None)
    assert d["d2"]["is_test_post"] is False and d["d3"]["is_test_post"] is True

    a = by_id(built.after_first["stg_ops__posting_attempts"], "attempt_id")
    assert (a["a1"]["status"], a["a1"]["status_raw"]) == ("failure", "failed")
    assert a["a2"]["status"] == "success"
    assert a["a3"]["status"] == "post_succeeded_db_write_failed"
    assert a["a1"]["metrics"] == {"compose_ms": 1200}

    runs = built.after_first["stg_ops__metrics_scraper_runs"]
    assert [(r["scraper_run_id"], r["status"], r["is_runner_mode"]) for r in runs] == [
        (1, "completed", True), (2, "skipped_not_runner", False),
    ]
    q = built.after_first["stg_ops__quarantine"]
    assert [(r["source_table"], r["reason"]) for r in q] == [("system_events", "invalid_json:event_data")]


# --------------------------------------------------------------------------------------------
# fct_system_events, incremental
# --------------------------------------------------------------------------------------------

def test_fct_system_events_first_run(built: Built) -> None:
    fct = by_id(built.after_first["fct_system_events"], "event_id")
    assert set(fct) == {r["id"] for r in first_load_rows()["system_events"]}
    assert fct["e08"]["is_deleted"] is True
    assert fct["e20"]["created_date"] == dt.date(2024, 5, 5)  # UTC day
    assert fct["e20"]["created_hour"] == ts("2024-05-05T03:00:00")
    assert fct["e02"]["is_error"] is True and fct["e09"]["is_error"] is False


def test_fct_system_events_incremental_run(built: Built) -> None:
    before = by_id(built.after_first["fct_system_events"], "event_id")
    after = by_id(built.after_second["fct_system_events"], "event_id")
    # new and late rows merged; the row committed late inside the lookback too
    assert {"n1", "n2", "n3"} <= set(after)
    assert after["n2"]["created_at"] == ts("2024-05-03T09:00:00")
    # a row stamped further back than the lookback is not re-read by an incremental run
    assert "n4" not in after
    # the newly deleted event is flagged, not dropped
    assert after[DELETED_IN_SECOND_LOAD]["is_deleted"] is True
    assert after[DELETED_IN_SECOND_LOAD]["deleted_at"] == LOAD_2
    assert before[DELETED_IN_SECOND_LOAD]["is_deleted"] is False
    # one row per event, nothing else changed
    assert len(after) == len(before) + 3
    unchanged = set(before) - {DELETED_IN_SECOND_LOAD}
    assert all(after[k] == before[k] for k in unchanged)


def test_hourly_aggregates_after_an_incremental_run_equal_a_rebuild(built: Built) -> None:
    """The second load brings new events, late ones and a deletion mark: the hours they touch
    are rebuilt, the deleted event's hour loses it, and nothing else moves."""
    assert built.aggregates_rebuilt["intermediate.int_error_family_hours"], "no rows"
    assert built.aggregates_rebuilt["intermediate.int_contract_hours"], "no rows"
    for relation in HOURLY_AGGREGATES:
        assert built.aggregates_incremental[relation] == built.aggregates_rebuilt[relation], relation


# --------------------------------------------------------------------------------------------
# mart_error_frequency
# --------------------------------------------------------------------------------------------

def test_mart_error_frequency_first_run(built: Built) -> None:
    m = by_id(built.after_first["mart_error_frequency"], "event_type")
    # checklist counts: raw severity literally error/critical, (as_of - 7 d, as_of], not deleted
    assert m["POST_FAILED"]["error_count"] == 3  # e01, e03, e15 (e02 is ' ERROR ', e14/e16 out)
    assert m["POST_FAILED"]["error_count_normalised"] == 4  # + e02
    assert m["POST_FAILED"]["days_with_errors"] == 3  # 05-01, 05-06, 05-07
    assert m["POST_FAILED"]["example_error_text"] == "rate limited"  # latest: e02 at 05-07 23:30
    assert m["REPLY_FAILED"]["error_count"] == 3
    assert m["REPLY_FAILED"]["days_with_errors"] == 2  # 05-04 (e17) and 05-05 (e18, e20 in UTC)
    assert m["REPLY_FAILED"]["critical_count"] == 1
    assert m["error_null_tweet_id"]["error_count"] == 0  # severity `high`: only normalised
    assert m["error_null_tweet_id"]["error_count_normalised"] == 1
    assert m["error_null_tweet_id"]["is_in_checklist"] is False
    assert m["circuit_breaker_stuck"]["critical_count"] == 1  # `fatal`
    assert "verification_failed" not in m  # deleted
    assert m["POST_FAILED"]["window_start"] == ts("2024-05-01T12:00:00")
    assert m["POST_FAILED"]["window_end"] == ts(AS_OF)
    assert m["POST_FAILED"]["error_rank"] == 1
    total = sum(r["error_count"] for r in m.values())
    assert m["POST_FAILED"]["share_of_errors"] == pytest.approx(3 / total)


def checklist_rows(warehouse: Warehouse, exclude_ids: tuple[str, ...] = ()) -> list[tuple]:
    """The checklist's own query on the raw rows still present in the source, with NOW() = as_of.

    The mart also bounds the window above by as_of (none of our rows but e16 lies beyond it).
    """
    utc_date = ("cast(timezone('UTC', created_at) as date)" if warehouse.target == "duckdb"
                else "date(created_at at time zone 'UTC')")
    excluded = ", ".join(f"'{i}'" for i in exclude_ids) or "''"
    return warehouse.rows(f"""
        select event_type,
               count(*) as error_count,
               count(distinct {utc_date}) as days_with_errors
        from raw.system_events
        where created_at > cast('{AS_OF}' as timestamptz) - interval '7 days'
          and created_at <= cast('{AS_OF}' as timestamptz)
          and severity in ('error', 'critical')
          and _deleted_at is null
          and id not in ({excluded})
        group by event_type
        order by error_count desc, event_type
    """)


def mart_as_checklist(rows: list[dict[str, Any]]) -> list[tuple]:
    """The mart reduced to the checklist's columns and rows, in the checklist's order."""
    return sorted(
        ((r["event_type"], r["error_count"], r["days_with_errors"]) for r in rows if r["is_in_checklist"]),
        key=lambda r: (-r[1], r[0]),
    )


def test_mart_error_frequency_equals_checklist_query(built: Built) -> None:
    assert mart_as_checklist(built.after_first["mart_error_frequency"]) == built.checklist_first
    assert mart_as_checklist(built.after_second["mart_error_frequency"]) == built.checklist_second
    assert len(built.checklist_first) >= 4


def test_mart_error_frequency_after_incremental_run(built: Built) -> None:
    m = by_id(built.after_second["mart_error_frequency"], "event_type")
    # POST_FAILED: e01, e15 + n1, n2 (e03 deleted)
    assert m["POST_FAILED"]["error_count"] == 4
    assert m["POST_FAILED"]["days_with_errors"] == 4  # 05-01, 05-03, 05-07, 05-08
    assert m["POST_FAILED"]["example_error_text"] == "new failure"
    assert m["REPLY_FAILED"]["error_count"] == 4  # + n3


# --------------------------------------------------------------------------------------------
# The two targets agree
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("snap", ["after_first", "after_second"])
@pytest.mark.parametrize("model", ["mart_error_frequency", "fct_system_events", "stg_ops__decisions"])
def test_targets_agree(builds: dict[str, Built], model: str, snap: str) -> None:
    for b in builds.values():
        for run in b.runs:
            assert_ok(run)
    duck = getattr(builds["duckdb"], snap)[model]
    pg = getattr(builds["postgres"], snap)[model]
    assert duck, "no rows"
    assert list(duck[0]) == list(pg[0]), "same columns in the same order"
    assert duck == pg
