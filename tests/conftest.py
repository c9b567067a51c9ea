"""Shared fixtures: a real PostgreSQL database per test (created and dropped), temp DuckDB files."""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from dbquery import query_location

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


def pytest_configure(config) -> None:
    """Parse the dbt project once, before any xdist worker imports the Dagster definitions: two
    workers finding a stale manifest at once would both write dbt_project/target."""
    if not hasattr(config, "workerinput"):
        import orchestration.defs.transform.dbt_assets  # noqa: F401  (parses when stale)


def pytest_xdist_make_scheduler(config, log):
    """Work units for ``pytest -n 2 --dist loadscope`` (make test): each test module whole on one
    worker (its module fixtures are built once), and every module using the shared simulated
    month together on one worker (the month is built once). pytest-xdist's own ``loadgroup``
    does not group under pytest 9 (it renames node ids, which pytest 9 no longer allows)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedMonthScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "simulated_month" if _uses_simulated_month(module) else module

    return SharedMonthScheduling(config, log)


# seconds per module under `make test` on the 2-core machine (2026-12-06; the shared month's
# modules together took ~640 s); modules not listed count as light
MODULE_SECONDS = {"test_pipeline_end_to_end.py": 280, "test_source_poison_rows.py": 185, "test_dbt_models.py": 170,
                  "test_prod_smoke.py": 160, "test_extract.py": 120, "test_source_isolation.py": 120,
                  "test_recovery_incremental.py": 90, "test_simulator.py": 90, "test_event_contract.py": 70,
                  "test_shutdown_incremental.py": 57, "test_posting_dating.py": 55, "test_gx_checks.py": 45,
                  "test_definitions.py": 35, "test_source_deletes_edits.py": 30, "test_source_missed_rows.py": 25,
                  "test_roles.py": 20, "test_analyst_copy.py": 15, "test_alert_bench.py": 80,
                  "test_fast_lane.py": 15, "test_incremental_boundary.py": 40}


def pytest_collection_modifyitems(config, items) -> None:
    """Longest work first, so that no heavy module starts last and leaves one worker running alone
    at the end: the shared month's modules, then the other modules by measured time. A worker
    queues one module behind the one it runs; the third in line queues behind the month, so it is
    the lightest. Within a module the order is kept."""
    modules = list(dict.fromkeys(item.nodeid.split("::", 1)[0] for item in items))
    month = [m for m in modules if _uses_simulated_month(m)]
    rest = sorted((m for m in modules if m not in month), key=lambda m: -MODULE_SECONDS.get(Path(m).name, 0))
    order = month + rest[:1] + rest[-1:] + rest[1:-1] if month and len(rest) > 2 else month + rest
    rank = {m: i for i, m in enumerate(order)}
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])


_SHARED_MONTH_TEST = re.compile(r"def \w+\([^)]*\bsimulated_warehouses\b")


@functools.cache
def _uses_simulated_month(module_path: str) -> bool:
    path = Path(__file__).parent.parent / module_path
    return path.is_file() and bool(_SHARED_MONTH_TEST.search(path.read_text()))


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


# ---------------------------------------------------------------------------------------------
# one simulated month, extracted and built on both warehouse targets, shared by the mart tests


class SimulatedWarehouses:
    """30 simulated days (seed 5, the bot's writing habits on) in a PostgreSQL source, extracted
    into a DuckDB and a PostgreSQL warehouse the way production would: a first load of all but the
    last 12 hours, then those hours land and an incremental run (hot window) and the full
    reconcile follow; built with ``build_marts`` (dbt build, template mining, the template marts;
    as_of = the end of the data). ``builds`` holds each target's BuildResult, ``extracts`` the
    ExtractResults of the last runs, ``habits`` the simulator's habit records."""

    def __init__(self, source, warehouses: dict, incidents: list[dict], as_of, end, days: int,
                 builds: dict | None = None, habits: list[dict] | None = None,
                 extracts: dict | None = None) -> None:
        self.source = source
        self.warehouses = warehouses
        self.incidents = incidents
        self.as_of = as_of
        self.end = end
        self.days = days
        self.builds = builds or {}
        self.habits = habits or []
        self.extracts = extracts or {}

    def habit(self, kind: str) -> dict:
        return next(h["details"] for h in self.habits if h["kind"] == kind)

    def query(self, kind: str, sql: str) -> list[tuple]:
        return query_location(self.warehouses[kind], sql)

    def incidents_of(self, kind: str) -> list[dict]:
        return [i for i in self.incidents if i["kind"] == kind]


def run_dbt_build(warehouse, as_of):
    """Build the marts the one way everything outside Dagster does (orchestration.lib.build), with
    dbt's unit tests: the one place the suite runs each of them, on both targets
    (tests/test_template_marts.py checks that all ran and passed)."""
    from orchestration.lib.build import build_marts

    return build_marts(warehouse, as_of, timeout=900, unit_tests=True)


@pytest.fixture(scope="session")
def simulated_warehouses(tmp_path_factory) -> Iterator[SimulatedWarehouses]:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timezone

    from datetime import timedelta

    from orchestration.lib.extract.engine import ExtractRequest, extract_all
    from orchestration.lib.settings import Location
    from orchestration.lib.simulator import simulate

    dbs = PgDatabases("simmonth")
    tmp = tmp_path_factory.mktemp("simulated_month")
    try:
        end = datetime(2026, 9, 1, tzinfo=timezone.utc)
        cut = end - timedelta(hours=12)
        days = 30
        source = Location.parse(dbs.new("src"))
        simulate(source, days=days, seed=5, end=end, write_to=cut, truth_path=tmp / "truth.json")
        warehouses = {"duckdb": Location.parse(str(tmp / "warehouse.duckdb")),
                      "postgres": Location.parse(dbs.new("wh"))}
        for wh in warehouses.values():
            extract_all(source, wh)  # the first load
        summary = simulate(source, days=days, seed=5, end=end, write_from=cut, write_to=end, reset=False,
                           truth_path=tmp / "truth.json")
        extracts = {}
        for kind, wh in warehouses.items():
            extract_all(source, wh)  # the hourly run: overlap, hot window, its per-day reconcile
            extracts[kind] = extract_all(source, wh, ExtractRequest(reconcile=True))  # the daily reconcile
        with ThreadPoolExecutor(max_workers=2) as pool:  # dbt is mostly waiting on the database
            builds = dict(zip(warehouses, pool.map(lambda wh: run_dbt_build(wh, end), warehouses.values())))
        yield SimulatedWarehouses(source, warehouses, summary.incidents, end, end, days, builds,
                                  habits=summary.habits, extracts=extracts)
    finally:
        dbs.drop_all()
