"""The alert fast lane: what it builds, its schedule, and that it never writes the warehouse while
the hourly job does (the run queue of deploy/dagster.yaml, decided by Dagster's own queue daemon
logic on a real instance), plus the prorated bucket in progress of null_tweet_ids."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import instance_for_test
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from orchestration.definitions import defs
from orchestration.lib.alerts import ledger
from orchestration.lib.fast_lane import JOB_NAME, lane_cron
from orchestration.lib.settings import alert_lane_minutes

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"

# the relations the built-in rules and alerts/rules.yml read, as dbt models (raw._extract_state
# is the extraction's own bookkeeping; the templates and anomalies come from Python assets)
RULE_MODELS = {"fct_system_events", "mart_shutdown_episodes", "int_job_runs", "mart_job_performance",
               "mart_posting_health_hourly", "mart_error_trends_hourly"}
NOT_IN_LANE = {"mart_error_templates", "mart_anomalies", "mart_slo_scorecard", "mart_template_rank_7d_30d",
               "dim_error_families", "mart_error_correlation", "daily_report", "analyst_copy"}


def test_the_lane_builds_what_the_rules_read_and_nothing_heavy():
    job = defs.resolve_job_def(JOB_NAME)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert RULE_MODELS <= keys
    assert {"raw/system_events", "raw/content_generation_metadata_comprehensive", "raw/job_heartbeats"} <= keys
    assert not keys & NOT_IN_LANE
    # every builtin rule's relation is in the lane, but for the two Python assets' marts
    read = {r.split(".", 1)[1] for relations, _fn in ledger.BUILTIN_EVALUATORS.values() for r in relations
            if not r.startswith("raw.")}
    assert read - keys == {"mart_error_templates", "mart_anomalies"}
    # no data test in the lane: the extract's own checks only (no dbt test, no GX suite)
    checks = {(c.asset_key.to_user_string(), c.name) for c in job.asset_layer.asset_graph.asset_check_keys}
    assert {name for _key, name in checks} == {"no_rows_quarantined", "source_schema_unchanged", "source_reconciled"}
    assert ("raw/system_events", "source_reconciled") in checks


def test_the_lane_schedule_and_its_setting(monkeypatch):
    schedule = defs.resolve_schedule_def("alert_fast_lane_schedule")
    assert schedule.job_name == JOB_NAME and schedule.cron_schedule == "*/2 * * * *"
    assert lane_cron(1) == "* * * * *" and lane_cron(10) == "*/10 * * * *"
    monkeypatch.setenv("OPS_ALERT_LANE_MINUTES", "7")
    with pytest.raises(ValueError, match="divide 60"):
        alert_lane_minutes()
    monkeypatch.setenv("OPS_ALERT_LANE_MINUTES", "0")
    assert alert_lane_minutes() == 0
    monkeypatch.delenv("OPS_ALERT_LANE_MINUTES")
    assert alert_lane_minutes() == 2


def _run(instance, job_name: str, status: dg.DagsterRunStatus) -> str:
    job = defs.resolve_job_def(job_name)
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("ops_warehouse"), "__repository__"),
                             job_name)
    run = dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), status=status, tags=dict(job.tags),
                        remote_job_origin=origin)
    instance.add_run(run)
    return run.run_id


def _dequeued(instance) -> set[str]:
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    return {r.job_name for r in daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)}


def test_the_run_queue_never_runs_the_lane_and_the_hourly_job_at_once(tmp_path):
    """Dagster's queue daemon, configured by deploy/dagster.yaml's run_coordinator, on an instance
    holding runs of both jobs."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    with instance_for_test(overrides={"run_coordinator": config["run_coordinator"]},
                           temp_dir=str(tmp_path)) as instance:
        # the hourly job is running: a lane run due now waits in the queue
        hourly = _run(instance, "extract_and_build", dg.DagsterRunStatus.STARTED)
        _run(instance, JOB_NAME, dg.DagsterRunStatus.QUEUED)
        assert _dequeued(instance) == set()
        # the hourly run ends: the lane run goes
        instance.report_run_failed(instance.get_run_by_id(hourly))
        assert _dequeued(instance) == {JOB_NAME}
        # both queued, nothing running: one of them only (max_concurrent_runs would allow two)
        _run(instance, "extract_and_build", dg.DagsterRunStatus.QUEUED)
        assert len(_dequeued(instance)) == 1
        assert config["run_coordinator"]["config"]["max_concurrent_runs"] >= 2
        # a report run reads the warehouse: it does not wait for a writer
        _run(instance, "report_daily", dg.DagsterRunStatus.QUEUED)
        assert "report_daily" in _dequeued(instance)


def test_the_lane_schedule_skips_while_a_lane_run_is_in_flight(tmp_path):
    schedule = defs.resolve_schedule_def("alert_fast_lane_schedule")
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=datetime(2026, 9, 1, 10, 5, tzinfo=timezone.utc))
        [request] = list(schedule.evaluate_tick(context).run_requests)
        assert request is not None
        _run(instance, JOB_NAME, dg.DagsterRunStatus.QUEUED)
        result = schedule.evaluate_tick(context)
        assert not result.run_requests and "still queued" in (result.skip_message or "")


def test_follow_with_incidents_writes_the_bots_rows_as_the_clock_reaches_them(tmp_path):
    """The bench's driver: the engine's incidents placed by bench latency's plan, written in two
    steps (history, then the clock) into a DuckDB source."""
    from orchestration.lib.bench.latency_bench import _simulate
    from orchestration.lib.db import connect
    from orchestration.lib.source.schema import create_source_schema

    from orchestration.lib.settings import Location

    source = Location.parse(str(tmp_path / "source.duckdb"))
    create_source_schema(source)
    follow = datetime(2026, 9, 1, 12, 20, tzinfo=timezone.utc)
    live, firsts = _simulate(source, 1, follow - timedelta(hours=3), follow + timedelta(hours=1.5), follow, 1200)
    incidents = live.timeline.book.incidents
    at = lambda share: follow + timedelta(seconds=1200 * share)  # noqa: E731
    # the spike first (2 % into the run), then the breaker's stuck event an hour after it opened (5 %)
    assert at(0.02) <= firsts["error_spike"] < at(0.02) + timedelta(minutes=5)
    assert firsts["circuit_breaker"] == pytest.approx(at(0.05), abs=timedelta(seconds=1))
    # the shutdown is one 120 min after the last success before it: aimed at 35-50 % of the run
    # (here the scan's best is a minute past it), after the spike and before the recovery at 60 %
    assert at(0.25) <= firsts["shutdown"] < at(0.60)
    assert len(incidents) == 4
    # the NULL burst from the recovery on: its first post ends the episode, or a later one does
    assert at(0.60) <= firsts["null_tweet_id"] < at(0.60) + timedelta(minutes=45)

    history = live.write_until(follow)
    assert history["system_events"] > 500 and history["decisions"] > 0
    assert live.write_until(follow) == {}  # nothing twice
    with connect(source) as conn:
        def count(sql: str) -> int:
            return conn.execute(sql).fetchone()[0]
        assert count("select count(*) from system_events") == history["system_events"]
        assert count("select count(*) from system_events where event_type = 'circuit_breaker_stuck'") == 0
    later = live.write_until(follow + timedelta(minutes=10))
    assert later["system_events"] > 0
    with connect(source) as conn:
        assert conn.execute("select count(*) from system_events where event_type = 'circuit_breaker_stuck'"
                            ).fetchone()[0] == 1
        assert conn.execute("select count(*), count(distinct id) from system_events").fetchone()[0] == \
            history["system_events"] + later["system_events"]
        # no successful post while the shutdown and the breaker hold the queue
        held = conn.execute(
            "select count(*) from system_events where event_type in ('POST_SUCCESS', 'REPLY_SUCCESS') "
            f"and created_at >= timestamptz '{(firsts['shutdown'] - timedelta(minutes=119)).isoformat()}' "
            f"and created_at < timestamptz '{(follow + timedelta(minutes=10)).isoformat()}'").fetchone()[0]
        assert held == 0


def test_latency_figures_pool_runs_and_count_late_notifications_as_misses():
    """bench latency --runs: one incident per kind a run, percentiles over the runs; the pass
    grid moves by interval / runs each run."""
    from orchestration.lib.bench.latency_bench import Run, Timed, figures, phases

    assert phases(4, 120) == [0, 30, 60, 90]
    at = datetime(2026, 9, 1, tzinfo=timezone.utc)
    runs = []
    for i, latency in enumerate((60, 120, 200, None)):
        t = Timed("shutdown", "lat-shutdown", at, written_at=1000.0,
                  notified_at=None if latency is None else 1000.0 + latency)
        runs.append(Run(timed=[t], phase=30.0 * i))
    f = figures(runs, 10, 120, 7)
    shutdown = f["kinds"]["shutdown"]
    assert (shutdown["incidents"], shutdown["notified"], shutdown["misses"]) == (4, 3, 1)
    assert shutdown["p50_seconds"] == 120 and shutdown["max_seconds"] == 200
    assert shutdown["p95_seconds"] == pytest.approx(192)
    assert f["runs"] == 4 and f["phases_seconds"] == [0, 30, 60, 90]
    assert f["kinds"]["error_spike"]["incidents"] == 0
