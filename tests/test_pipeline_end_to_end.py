"""End to end through Dagster: simulated source → extract → dbt → mart_error_frequency,
on both warehouse targets, compared with each other and with the checklist's own SQL run
directly on the source."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import uuid

import dagster as dg
import duckdb
import pytest
from dagster_runs import materialized, run_main_job, step_failures
from dbquery import normalised_rows, query_location
from duckdb_holder import Holder
from pg_roles import as_user, denied, drop_roles, rows
from source_fidelity import assert_raw_equals_source

from orchestration.defs.analyst_copy import ASSET_KEY as ANALYST_COPY_KEY
from orchestration.lib import checklist
from orchestration.lib.admin.roles import RoleNames, setup_roles
from orchestration.lib.analyst_copy import WarehouseLocked, analyst_copy_path, connect_read_only
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.settings import Location
from orchestration.lib.simulator import simulate

END = datetime(2026, 11, 1, tzinfo=timezone.utc)
# the checklist runs at NOW() with no upper bound: pin it to the end of the simulated data,
# 10 days long, so the 7-day window still cuts through it at its start
AS_OF = END
MART_COLUMNS = "event_type, error_count, days_with_errors, error_count_normalised, critical_count"


class Pipeline:
    """The source (``source``: as its owner, for the tests' queries; ``reader``: as the job read it),
    the warehouses as the job wrote them (the PostgreSQL one as the loader), each run's result."""

    def __init__(self, source: Location, reader: Location, warehouses: dict[str, Location],
                 results: dict[str, dg.ExecutionResult], roles: RoleNames, warehouse_admin: str) -> None:
        self.source, self.reader, self.warehouses, self.results = source, reader, warehouses, results
        self.roles, self.warehouse_admin = roles, warehouse_admin

    def __iter__(self):  # source, warehouses, results
        return iter((self.source, self.warehouses, self.results))


def run_on_both(source: Location, warehouses: dict[str, Location]) -> dict[str, dg.ExecutionResult]:
    """The two targets at once (dbt mostly waits on its database; two cores here)."""
    with ThreadPoolExecutor(max_workers=len(warehouses)) as pool:
        futures = {kind: pool.submit(run_main_job, source, wh, AS_OF.isoformat()) for kind, wh in warehouses.items()}
        return {kind: future.result() for kind, future in futures.items()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, module_pg_databases):
    tmp = tmp_path_factory.mktemp("e2e")
    source_dsn = module_pg_databases.new("src")
    simulate(Location.parse(source_dsn), days=10, seed=7, end=END, truth_path=tmp / "truth.json")
    warehouse_dsn = module_pg_databases.new("wh")
    roles = RoleNames.with_prefix(f"e{uuid.uuid4().hex[:6]}_")
    try:
        setup_roles(Location.parse(warehouse_dsn), Location.parse(source_dsn), roles, passwords={})
        reader = Location.parse(as_user(source_dsn, roles.source_reader))
        warehouses = {"duckdb": Location.parse(str(tmp / "warehouse.duckdb")),
                      "postgres": Location.parse(as_user(warehouse_dsn, roles.loader))}
        yield Pipeline(Location.parse(source_dsn), reader, warehouses, run_on_both(reader, warehouses), roles,
                       warehouse_dsn)
    finally:
        drop_roles(roles, [warehouse_dsn, source_dsn])


def _judges_recency(check) -> bool:
    """The Great Expectations suites judge recency against the wall clock: on this history, which
    ended on END, their freshness expectations (the newest row within N hours of now) fail, and
    only those may (tests/test_gx_checks.py covers the suites)."""
    table = check.metadata.get("failing_expectations")
    failing = [line for line in (table.value if table else "").splitlines() if line.startswith("| `")]
    return (check.asset_check_key.name.startswith("gx_") and bool(failing)
            and all(line.startswith("| `expect_column_max_to_be_between` |") for line in failing))


def test_the_job_succeeds_on_both_targets_with_all_dbt_checks_passing(pipeline):
    source, _, results = pipeline
    bad_times = len(_truth_habit(source, "bad_event_times")["events"])
    assert bad_times >= 1, "the simulator's writers leave NULL / epoch / infinity event times"
    for kind, result in results.items():
        assert result.success, (kind, step_failures(result))
        checks = result.get_asset_check_evaluations()
        assert checks, f"{kind}: dbt tests should report as asset checks"
        failed = [c for c in checks if not c.passed and not _judges_recency(c)]
        # the only red check: the extract quarantined the source's events with impossible times
        assert [c.asset_check_key.to_user_string() for c in failed] == ["raw/system_events:no_rows_quarantined"], \
            (kind, [(c.asset_check_key.to_user_string(), c.metadata) for c in failed])
        assert sum(failed[0].metadata["by_reason"].value.values()) == bad_times, kind
        expected = {"raw/system_events", "fct_system_events", "mart_error_frequency", "mart_error_templates",
                    "mart_template_rank_7d_30d", "mart_template_correlation", "mart_anomalies"}
        assert {f"raw/{t}" for t in TABLES} | expected <= materialized(result), kind


def test_extraction_metadata_reports_counts_cursor_and_lag(pipeline):
    _, _, results = pipeline
    events = [e for e in results["duckdb"].get_asset_materialization_events()
              if e.asset_key == dg.AssetKey(["raw", "system_events"])]
    meta = events[0].materialization.metadata
    assert meta["rows_read"].value > 50_000
    assert meta["rows_inserted"].value == meta["rows_read"].value - meta["rows_quarantined"].value
    assert meta["cursor_after"].value.startswith("2026-10-31 23:")
    assert meta["lag_seconds"].value > 0


def test_raw_tables_equal_the_source(pipeline):
    source, warehouses, _ = pipeline
    for kind, wh in warehouses.items():
        sizes = assert_raw_equals_source(source, wh)
        assert sizes["system_events"].quarantined == len(_truth_habit(source, "bad_event_times")["events"]), kind
        assert set(sizes) == set(TABLES)


def _truth_habit(source: Location, kind: str) -> dict:
    """One of the simulator's habit records (ground truth kept in sim_truth, never in the source tables)."""
    [(details,)] = query_location(source, f"select details from sim_truth.incidents where kind = '{kind}'")
    return details


def test_mart_is_the_same_on_duckdb_and_postgres(pipeline):
    _, warehouses, _ = pipeline
    rows = {kind: sorted(query_location(wh, f"select {MART_COLUMNS} from marts.mart_error_frequency"))
            for kind, wh in warehouses.items()}
    assert rows["duckdb"], "the mart should not be empty"
    assert rows["duckdb"] == rows["postgres"]


def test_mart_equals_the_checklists_own_sql_on_the_source(pipeline):
    source, warehouses, _ = pipeline
    expected = sorted(query_location(source, checklist.pinned(checklist.MOST_COMMON_ERRORS_LAST_7_DAYS, AS_OF)))
    assert len(expected) >= 10
    for kind, wh in warehouses.items():
        got = sorted(query_location(wh, "select event_type, error_count, days_with_errors "
                               "from marts.mart_error_frequency where error_count > 0"))
        assert got == expected, kind


def test_normalised_count_sees_what_the_checklists_literal_filter_misses(pipeline):
    """The source writes severities like 'high' and 'deadlock' that the checklist's IN list skips."""
    source, warehouses, _ = pipeline
    quirky = query_location(source, "select count(*) from system_events where severity in ('high', 'deadlock') "
                           f"and created_at > timestamptz '{AS_OF.isoformat()}' - interval '7 days' "
                           f"and created_at <= timestamptz '{AS_OF.isoformat()}'")[0][0]
    totals = query_location(warehouses["duckdb"], "select sum(error_count), sum(error_count_normalised) "
                                         "from marts.mart_error_frequency")[0]
    assert totals[1] - totals[0] == quirky


# ---------------------------------------------------------------------------------------------
# least privilege: the job above ran as the source reader and the loader


def test_the_job_ran_as_the_source_reader_and_the_loader_only(pipeline):
    """Everything in the PostgreSQL warehouse belongs to the loader; the analyst reads the marts the
    run built, and not raw."""
    analyst = as_user(pipeline.warehouse_admin, pipeline.roles.analyst)
    assert rows(analyst, "select count(*) from marts.fct_system_events")[0][0] > 0
    assert rows(analyst, "select count(*) from marts.mart_error_frequency")[0][0] > 0
    assert denied(analyst, "select count(*) from raw.system_events")
    owners = rows(pipeline.warehouse_admin, "select distinct pg_get_userbyid(c.relowner) from pg_class c "
                  "join pg_namespace n on n.oid = c.relnamespace "
                  "where n.nspname in ('raw', 'staging', 'intermediate', 'marts', 'seeds', 'alerts')")
    assert owners == [(pipeline.roles.loader,)]
    # the reader could read the source tables and nothing else
    assert denied(pipeline.reader.dsn, "select count(*) from sim_truth.incidents")


# ---------------------------------------------------------------------------------------------
# the analysts' copy of the DuckDB warehouse, published by the run


def test_the_main_job_publishes_the_copy_after_its_marts(pipeline):
    warehouse, result = pipeline.warehouses["duckdb"], pipeline.results["duckdb"]
    order = [e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert order[-1] == "analyst_copy"  # after every other materialization of the run
    [event] = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
               and e.asset_key == ANALYST_COPY_KEY]
    metadata = event.event_specific_data.materialization.metadata
    copy = analyst_copy_path(warehouse)
    assert metadata["path"].value == str(copy) and metadata["bytes"].value == copy.stat().st_size


def test_the_copy_holds_the_same_rows_as_the_main_file(pipeline):
    warehouse = pipeline.warehouses["duckdb"]
    copy = analyst_copy_path(warehouse)
    counts = {}
    for path in (warehouse.path, copy):
        conn = duckdb.connect(str(path), read_only=True)
        tables = conn.execute("select schema_name, table_name from duckdb_tables() order by all").fetchall()
        views = conn.execute("select schema_name, view_name from duckdb_views() where not internal "
                             "order by all").fetchall()
        counts[path] = {f"{s}.{t}": conn.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0]
                        for s, t in tables + views}
        conn.close()
    assert counts[copy] == counts[warehouse.path]
    marts = {k: n for k, n in counts[copy].items() if k.startswith("marts.")}
    assert len(marts) >= 10 and marts["marts.mart_error_frequency"] > 0
    assert any(k.startswith("staging.") for k in counts[copy])  # the views resolve in the copy


def test_a_report_reads_the_copy_while_a_run_holds_the_warehouse(pipeline):
    from orchestration.lib.reports.data import gather
    from orchestration.lib.reports.period import period_for

    warehouse = pipeline.warehouses["duckdb"]
    period = period_for("daily", END)
    unlocked = gather(warehouse, period)
    assert unlocked.headline["errors"] > 0
    with Holder(warehouse.path, "hold"):  # a run writing the main file (read-write connection held)
        with pytest.raises(WarehouseLocked):
            connect_read_only(warehouse)
        assert gather(warehouse, period).headline == unlocked.headline


# ---------------------------------------------------------------------------------------------
# last: a second run rewrites the PostgreSQL warehouse

# the error marts whose incremental path (hooks included) a second run exercises
STABLE_MARTS = ("mart_error_frequency", "mart_shutdown_episodes", "mart_shutdown_causes",
                "mart_checklist_shutdown_causes", "mart_error_recovery", "mart_error_correlation",
                # sums of the hourly aggregates an incremental run maintains (issue 16)
                "dim_error_families", "mart_template_rank_7d_30d", "mart_slo_scorecard")


def test_a_second_run_takes_the_incremental_path_and_changes_no_mart(pipeline):
    """Runs last (it rewrites the warehouse): the same job again, nothing new in the source —
    every incremental model and its pre/post-hooks run, the checks pass and the marts keep their
    rows. On PostgreSQL, the production target, only: DuckDB's second incremental build (hooks
    included) is covered by test_dbt_models' build-twice fixture, and running both here cost the
    suite about 3 minutes of CPU."""
    source, all_warehouses, _ = pipeline
    warehouses = {"postgres": all_warehouses["postgres"]}
    before = {(kind, mart): normalised_rows(query_location(wh, f"select * from marts.{mart}"))
              for kind, wh in warehouses.items() for mart in STABLE_MARTS}
    results = {"postgres": run_main_job(pipeline.reader, warehouses["postgres"], AS_OF.isoformat())}
    for kind, wh in warehouses.items():
        result = results[kind]
        assert result.success, kind
        failed = [c.asset_check_key.to_user_string() for c in result.get_asset_check_evaluations()
                  if not c.passed and not _judges_recency(c)]
        assert not failed, (kind, failed)
        for mart in STABLE_MARTS:
            assert normalised_rows(query_location(wh, f"select * from marts.{mart}")) == before[(kind, mart)], \
                (kind, mart)
