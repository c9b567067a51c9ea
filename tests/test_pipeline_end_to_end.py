"""End to end through Dagster: simulated source → extract → dbt → mart_error_frequency,
on both warehouse targets, compared with each other and with the checklist's own SQL run
directly on the source."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import dagster as dg
import pytest
from dbquery import normalised_rows, query_location
from source_fidelity import assert_raw_equals_source

from orchestration.defs.error_analytics.assets import mart_error_templates
from orchestration.defs.extract.assets import extract_assets
from orchestration.defs.resources import OpsLocations
from orchestration.defs.transform.dbt_assets import dbt_resource, ops_dbt_models, ops_dbt_template_models
from orchestration.lib import checklist
from orchestration.lib.dbt_env import dbt_target
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.settings import Location
from orchestration.lib.simulator import simulate

END = datetime(2026, 11, 1, tzinfo=timezone.utc)
# the checklist runs at NOW() with no upper bound: pin it to the end of the simulated data,
# 10 days long, so the 7-day window still cuts through it at its start
AS_OF = END
MART_COLUMNS = "event_type, error_count, days_with_errors, error_count_normalised, critical_count"


def run_on_both(source: Location, warehouses: dict[str, Location]) -> dict[str, dg.ExecuteInProcessResult]:
    """The two targets at once (dbt mostly waits on its database; two cores here)."""
    with ThreadPoolExecutor(max_workers=len(warehouses)) as pool:
        futures = {kind: pool.submit(run_pipeline, source, wh) for kind, wh in warehouses.items()}
        return {kind: future.result() for kind, future in futures.items()}


def run_pipeline(source: Location, warehouse: Location) -> dg.ExecuteInProcessResult:
    resources = {
        "ops_locations": OpsLocations(source_url=source.dsn or str(source.path),
                                      warehouse_url=warehouse.dsn or str(warehouse.path)),
        "dbt": dbt_resource(dbt_target(warehouse)),
    }
    # closed in the thread that opened it (its SQLite storage must not be closed from another)
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [*extract_assets, ops_dbt_models, mart_error_templates, ops_dbt_template_models], resources=resources,
            run_config={"ops": {"ops_dbt_models": {"config": {"as_of": AS_OF.isoformat()}},
                                "mart_error_templates": {"config": {"as_of": AS_OF.isoformat()}},
                                "ops_dbt_template_models": {"config": {"as_of": AS_OF.isoformat()}}}},
            instance=instance, raise_on_error=False,
        )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, module_pg_databases):
    tmp = tmp_path_factory.mktemp("e2e")
    source = Location.parse(module_pg_databases.new("src"))
    simulate(source, days=10, seed=7, end=END, truth_path=tmp / "truth.json")
    warehouses = {"duckdb": Location.parse(str(tmp / "warehouse.duckdb")),
                  "postgres": Location.parse(module_pg_databases.new("wh"))}
    return source, warehouses, run_on_both(source, warehouses)


def test_the_job_succeeds_on_both_targets_with_all_dbt_checks_passing(pipeline):
    source, _, results = pipeline
    bad_times = len(_truth_habit(source, "bad_event_times")["events"])
    assert bad_times >= 1, "the simulator's writers leave NULL / epoch / infinity event times"
    for kind, result in results.items():
        assert result.success, kind
        checks = result.get_asset_check_evaluations()
        assert checks, f"{kind}: dbt tests should report as asset checks"
        failed = [c for c in checks if not c.passed]
        # the only red check: the extract quarantined the source's events with impossible times
        assert [c.asset_check_key.to_user_string() for c in failed] == ["raw/system_events:no_rows_quarantined"], kind
        assert sum(failed[0].metadata["by_reason"].value.values()) == bad_times, kind
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        expected = {"raw/system_events", "fct_system_events", "mart_error_frequency", "mart_error_templates",
                    "mart_template_rank_7d_30d", "mart_template_correlation"}
        assert expected <= materialized


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


# the error marts whose incremental path (hooks included) a second run exercises
STABLE_MARTS = ("mart_error_frequency", "mart_shutdown_episodes", "mart_shutdown_causes",
                "mart_checklist_shutdown_causes", "mart_error_recovery", "mart_error_correlation")


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
    results = {"postgres": run_pipeline(source, warehouses["postgres"])}
    for kind, wh in warehouses.items():
        result = results[kind]
        assert result.success, kind
        assert all(c.passed for c in result.get_asset_check_evaluations()), kind
        for mart in STABLE_MARTS:
            assert normalised_rows(query_location(wh, f"select * from marts.{mart}")) == before[(kind, mart)], \
                (kind, mart)
