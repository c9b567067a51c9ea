"""The Dagster code location: it loads, and its graph, jobs and schedules are what we expect.

The snapshot of asset keys makes a rename visible in review.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from orchestration.definitions import defs

EXPECTED_EXTRACT_KEYS = {
    "raw/system_events", "raw/job_heartbeats", "raw/job_heartbeat_snapshots",
    "raw/content_generation_metadata_comprehensive", "raw/decision_snapshots", "raw/posting_attempts",
    "raw/metrics_scraper_runs",
}
EXPECTED_DBT_KEYS = {
    "stg_ops__system_events", "stg_ops__job_heartbeats", "stg_ops__job_heartbeat_snapshots",
    "stg_ops__decisions", "stg_ops__posting_attempts", "stg_ops__metrics_scraper_runs",
    "stg_ops__quarantine", "fct_system_events", "mart_error_frequency",
}
EXPECTED_PYTHON_MART_KEYS = {"mart_error_templates", "mart_anomalies"}
EXPECTED_REPORT_KEYS = {"daily_report", "weekly_report", "monthly_report"}
EXPECTED_TEMPLATE_MART_KEYS = {"int_template_hour_counts", "int_template_hour_series", "mart_template_rank_7d_30d", "mart_template_correlation"}
EXPECTED_ANALYST_KEYS = {"analyst_copy"}  # the read-only copy of a DuckDB warehouse, the job's last asset


def _graph():
    return defs.resolve_asset_graph()


def test_definitions_validate_with_the_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "orchestration.definitions"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_asset_keys_snapshot():
    keys = {k.to_user_string() for k in _graph().materializable_asset_keys}
    assert EXPECTED_EXTRACT_KEYS <= keys
    assert EXPECTED_DBT_KEYS <= keys
    assert EXPECTED_PYTHON_MART_KEYS <= keys
    assert EXPECTED_TEMPLATE_MART_KEYS <= keys
    assert EXPECTED_REPORT_KEYS <= keys
    assert EXPECTED_ANALYST_KEYS <= keys


def test_lineage_runs_from_source_table_to_mart():
    graph = _graph()
    upstream = {k.to_user_string() for k in graph.upstream_key_iterator(dg.AssetKey("mart_error_frequency"))}
    assert {"fct_system_events", "stg_ops__system_events", "raw/system_events"} <= upstream


def test_template_marts_run_after_the_template_miner():
    graph = _graph()
    for key in EXPECTED_TEMPLATE_MART_KEYS:
        upstream = {k.to_user_string() for k in graph.upstream_key_iterator(dg.AssetKey(key))}
        assert {"mart_error_templates", "fct_system_events"} <= upstream, key
        assert graph.get(dg.AssetKey(key)).group_name == "error_analytics", key
    # the dbt source `templates` is the Python asset, not a raw table
    assert not any(k.path[0] == "raw" and k.path[-1].endswith("templates") for k in graph.get_all_asset_keys())
    # two dbt assets: the template marts are not in the first one (they would run before the miner)
    from orchestration.defs.transform.dbt_assets import ops_dbt_models, ops_dbt_template_models

    assert not EXPECTED_TEMPLATE_MART_KEYS & {k.to_user_string() for k in ops_dbt_models.keys}
    assert EXPECTED_TEMPLATE_MART_KEYS == {k.to_user_string() for k in ops_dbt_template_models.keys}


def test_every_asset_has_a_group_an_owner_and_a_description():
    graph = _graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.group_name in {"extract", "staging", "error_analytics", "jobs_and_posting", "quality",
                                   "alerts_and_reports", "analysts"}, key
        assert node.owners, key
        assert (node.description or "").strip(), key


def test_hourly_schedule_runs_the_main_job():
    schedule = defs.resolve_schedule_def("hourly_extract_and_build")
    assert schedule.job_name == "extract_and_build"
    assert schedule.cron_schedule == "5 * * * *"
    job = defs.resolve_job_def("extract_and_build")
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert (EXPECTED_EXTRACT_KEYS | EXPECTED_DBT_KEYS | EXPECTED_PYTHON_MART_KEYS | EXPECTED_TEMPLATE_MART_KEYS
            | EXPECTED_ANALYST_KEYS) <= selected
    assert not selected & EXPECTED_REPORT_KEYS  # reports run on their own schedules


def test_reports_run_on_their_schedules_after_the_marts_they_read():
    graph = _graph()
    materializable = graph.materializable_asset_keys
    for period, cron in (("daily", "30 6 * * *"), ("weekly", "45 6 * * 1"), ("monthly", "0 7 1 * *")):
        key = dg.AssetKey(f"{period}_report")
        parents = graph.get(key).parent_keys
        assert parents and parents <= materializable, (key, parents - materializable)  # no dangling input
        assert {"mart_error_trends_hourly", "mart_slo_scorecard", "mart_anomalies"} <= {k.to_user_string() for k in parents}
        schedule = defs.resolve_schedule_def(f"{period}_report_schedule")
        assert (schedule.job_name, schedule.cron_schedule) == (f"report_{period}", cron)
        # the scheduled time pins the report's as_of (a late tick builds the same report)
        context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 9, 1, 6, 30, tzinfo=timezone.utc))
        [request] = list(schedule.evaluate_tick(context).run_requests)
        assert request.run_config["ops"][f"{period}_report"]["config"]["as_of"] == "2026-09-01T06:30:00+00:00"


def test_alert_sensors_are_in_the_code_location():
    names = {s.name for s in defs.sensors}
    assert {"alerts_after_warehouse_update", "alerts_after_partial_update", "alerts_timer"} <= names


def test_dbt_tests_appear_as_asset_checks():
    check_keys = defs.resolve_asset_graph().asset_check_keys
    checked_assets = {k.asset_key.to_user_string() for k in check_keys}
    assert "fct_system_events" in checked_assets
    assert "mart_error_frequency" in checked_assets


def test_quality_checks_are_asset_checks_of_the_assets_they_judge():
    """The GX suites (one check per file in expectations/), the payload contract and the anomaly
    checks are in the code location and run with the main job."""
    from orchestration.lib.quality.gx_suites import load_suites

    check_keys = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    suites = load_suites()
    assert len(suites) >= 8
    assert ("raw/system_events", "gx_raw_system_events") in check_keys
    assert ("int_hour_spine", "gx_int_hour_spine") in check_keys
    assert sum(name.startswith("gx_") for _, name in check_keys) == len(suites)
    assert ("mart_event_contract_violations", "event_payload_contract") in check_keys
    assert {("mart_anomalies", "no_new_anomalies"), ("mart_anomalies", "no_new_critical_anomalies")} <= check_keys
    job = defs.resolve_job_def("extract_and_build")
    assert {"mart_anomalies", "mart_event_contract_violations"} <= {
        k.to_user_string() for k in job.asset_layer.executable_asset_keys}


def test_quarantine_check_warns_only_when_this_run_quarantined_rows():
    from datetime import datetime, timezone

    from orchestration.defs.extract.assets import quarantine_check
    from orchestration.lib.extract.engine import ExtractResult
    from orchestration.lib.extract.merge import MergeCounts

    def result(quarantined: dict[str, int], new: int) -> ExtractResult:
        return ExtractResult(table="system_events", mode="incremental", run_id="r", window_start=None,
                             window_end=None, cursor_before=None, cursor_after=None,
                             source_now=datetime.now(timezone.utc), quarantine_open=3,
                             counts=MergeCounts(quarantined_by_reason=quarantined, quarantined_new=new))

    assert quarantine_check(result({}, 0)).passed
    # re-read rows already in the quarantine: reported, not red again
    again = quarantine_check(result({"missing_created_at": 3}, 0))
    assert again.passed and again.metadata["rows_refused_this_run"].value == 3
    dirty = quarantine_check(result({"invalid_json_event_data": 2}, 2))
    assert not dirty.passed and dirty.severity == dg.AssetCheckSeverity.WARN
    assert dirty.metadata["rows_quarantined"].value == 2
    assert dirty.metadata["quarantine_open"].value == 3


def _dbt_parse(target_path: Path, dbt_vars: str) -> dict:
    """``dbt parse`` into ``target_path`` (DuckDB target: no database is touched); dbt's perf_info."""
    from orchestration.lib.build import dbt_executable
    from orchestration.lib.settings import DBT_PROJECT_DIR

    subprocess.run([dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                    "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "duckdb", "--vars", dbt_vars,
                    "--target-path", str(target_path)], check=True, capture_output=True,
                   # one profile for every call: a changed profile (another path) means a full parse
                   env={**os.environ, "OPS_WAREHOUSE_DUCKDB_PATH": str(target_path.parent / "unused.duckdb")})
    return json.loads((target_path / "perf_info.json").read_text())


def test_a_published_parse_spares_the_next_dbt_invocation_its_full_parse(tmp_path):
    """What the dbt assets do after each invocation (publish_partial_parse into the project's
    target, which dagster-dbt copies into the next invocation's own target): the next invocation
    with the same vars and profile parses no file again (dbt parse leaves a file made without the
    run's vars, with which every invocation parsed the whole project)."""
    from orchestration.lib.build import PARTIAL_PARSE_FILE, publish_partial_parse

    run_vars = '{"time_floor": "2020-01-01T00:00:00+00:00"}'
    first, project_target, second = tmp_path / "first", tmp_path / "project_target", tmp_path / "second"
    assert _dbt_parse(first, run_vars)["parsed_path_count"] > 0  # nothing to start from

    assert publish_partial_parse(first, project_target)
    assert sorted(p.name for p in project_target.iterdir()) == [PARTIAL_PARSE_FILE]  # no staging file left
    second.mkdir()
    (second / PARTIAL_PARSE_FILE).write_bytes((project_target / PARTIAL_PARSE_FILE).read_bytes())
    assert _dbt_parse(second, run_vars)["parsed_path_count"] == 0

    assert not publish_partial_parse(tmp_path / "no_such_invocation", project_target)
