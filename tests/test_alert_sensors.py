"""The alert sensors through Dagster's own sensor contexts, on a DuckDB warehouse: a finished run
triggers a tick that fires and later resolves; a retried tick (the same run, the same timer slot)
sends nothing twice; the timer evaluates the staleness rules and keeps its cursor."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest

from orchestration.defs.alerts.sensors import (
    TIMER_STEP,
    alerts_after_partial_update,
    alerts_after_warehouse_update,
    alerts_timer,
)
from orchestration.defs.resources import OpsLocations
from orchestration.lib.alerts.tick import floor_time

RULES_YML = """
builtin_overrides:
  stale_source: {condition: "> 120"}
rules:
  - name: queue_depth_high
    kind: sql
    sql: select 'posting_queue' as subject, depth as value from marts.queue_depth
    condition: "> 100"
    window: 1h
    severity: critical
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts; create table marts.queue_depth (depth integer); "
                    "insert into marts.queue_depth values (250)")
        con.execute("create schema raw; create table raw._extract_state "
                    "(source_table text, cursor_value text, last_run_at timestamptz)")
        con.execute("insert into raw._extract_state values ('system_events', null, ?), ('job_heartbeats', null, ?)",
                    [datetime.now(timezone.utc) - timedelta(hours=5), datetime.now(timezone.utc)])
    (tmp_path / "rules.yml").write_text(RULES_YML)
    monkeypatch.setenv("OPS_ALERT_RULES_FILE", str(tmp_path / "rules.yml"))
    monkeypatch.setenv("OPS_ALERT_SILENCES_FILE", str(tmp_path / "no-silences.yml"))
    monkeypatch.setenv("OPS_ALERT_FILE_DIR", str(tmp_path / "alerts"))
    for var in ("OPS_ALERT_SLACK_WEBHOOK_URL", "OPS_ALERT_WEBHOOK_URL", "OPS_ALERT_SMTP_HOST"):
        monkeypatch.delenv(var, raising=False)
    return warehouse, tmp_path / "alerts" / "notifications.jsonl"


def sent(jsonl) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []


@dg.op
def touch_warehouse():
    return 1


@dg.job
def warehouse_update():
    touch_warehouse()


def run_finished(instance) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    result = warehouse_update.execute_in_process(instance=instance)
    return result.dagster_run, result.get_run_success_event()


def after_update_tick(instance, warehouse, run, event):
    context = dg.build_run_status_sensor_context(
        sensor_name="alerts_after_warehouse_update", dagster_instance=instance, dagster_run=run,
        dagster_event=event, resources={"ops_locations": OpsLocations(source_url="unused.duckdb",
                                                                       warehouse_url=str(warehouse))})
    return alerts_after_warehouse_update(context)


def test_a_finished_run_fires_then_resolves_and_a_retried_tick_sends_nothing_twice(env):
    warehouse, jsonl = env
    with dg.DagsterInstance.ephemeral() as instance:
        run, event = run_finished(instance)
        after_update_tick(instance, warehouse, run, event)
        first = sent(jsonl)
        fired = [n for n in first if n["rule"] == "queue_depth_high"]
        assert [(n["status"], n["subject"], n["severity"]) for n in fired] == [("firing", "posting_queue", "critical")]
        assert fired[0]["numbers"]["value"] == 250

        after_update_tick(instance, warehouse, run, event)  # the same run handed again (a retried tick)
        assert sent(jsonl) == first

        with duckdb.connect(str(warehouse)) as con:
            con.execute("update marts.queue_depth set depth = 3")
        run2, event2 = run_finished(instance)
        after_update_tick(instance, warehouse, run2, event2)
        resolved = [n for n in sent(jsonl)[len(first):] if n["rule"] == "queue_depth_high"]
        assert [(n["status"], n["since"]) for n in resolved] == [("resolved", fired[0]["since"])]


def test_report_runs_do_not_trigger_an_evaluation(env):
    warehouse, jsonl = env

    @dg.job(name="report_daily")
    def report_daily():
        touch_warehouse()

    with dg.DagsterInstance.ephemeral() as instance:
        result = report_daily.execute_in_process(instance=instance)
        skipped = after_update_tick(instance, warehouse, result.dagster_run, result.get_run_success_event())
        assert isinstance(skipped, dg.SkipReason) and "does not update" in skipped.skip_message
        assert sent(jsonl) == []


@dg.op
def extract_then_fail():
    raise dg.Failure("extract of content_generation_metadata_comprehensive failed: source relation not found")


@dg.job
def partial_update():
    extract_then_fail()


def test_a_run_that_failed_after_extracting_some_tables_still_evaluates_the_rules(env):
    """One broken source table fails its extract and the run; the rest was extracted and built:
    the alerts go on. A run that extracted nothing evaluates nothing."""
    warehouse, jsonl = env
    with dg.DagsterInstance.ephemeral() as instance:
        result = partial_update.execute_in_process(instance=instance, raise_on_error=False)
        run, event = result.dagster_run, result.get_run_failure_event()
        resources = {"ops_locations": OpsLocations(source_url="unused.duckdb", warehouse_url=str(warehouse))}

        def tick():
            return alerts_after_partial_update(dg.build_run_status_sensor_context(
                sensor_name="alerts_after_partial_update", dagster_instance=instance, dagster_run=run,
                dagster_event=event, resources=resources))

        skipped = tick()
        assert isinstance(skipped, dg.SkipReason) and "without extracting" in skipped.skip_message
        assert sent(jsonl) == []
        with duckdb.connect(str(warehouse)) as con:
            con.execute("alter table raw._extract_state add column last_status text")
            con.execute("alter table raw._extract_state add column last_run_id text")
            con.execute("update raw._extract_state set last_status = 'succeeded', last_run_id = ? "
                        "where source_table = 'system_events'", [run.run_id[:12]])
        tick()
        assert "queue_depth_high" in {n["rule"] for n in sent(jsonl) if n["status"] == "firing"}


def test_the_timer_evaluates_staleness_once_per_slot_and_keeps_its_cursor(env):
    warehouse, jsonl = env
    resources = {"ops_locations": OpsLocations(source_url="unused.duckdb", warehouse_url=str(warehouse))}
    with dg.DagsterInstance.ephemeral() as instance:
        result = alerts_timer(dg.build_sensor_context(instance=instance, resources=resources))
        slot = floor_time(datetime.now(timezone.utc), TIMER_STEP)
        assert isinstance(result, dg.SensorResult) and datetime.fromisoformat(result.cursor) <= slot
        notes = sent(jsonl)
        # only the staleness rules: the 5-hour-old source fires, the fresh one and the SQL rule do not
        assert [(n["rule"], n["subject"], n["status"]) for n in notes] == [("stale_source", "system_events", "firing")]
        assert notes[0]["numbers"]["value"] > 295  # 5 h, less up to 5 min of slot rounding

        again = alerts_timer(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
        assert isinstance(again, dg.SkipReason) and "already evaluated" in again.skip_message
        # a restarted daemon with a lost cursor evaluates the same slot again: the ledger sends nothing new
        if floor_time(datetime.now(timezone.utc), TIMER_STEP).isoformat() == result.cursor:
            alerts_timer(dg.build_sensor_context(instance=instance, resources=resources))
            assert sent(jsonl) == notes


def test_a_locked_duckdb_warehouse_skips_the_timer_tick_without_moving_the_cursor(env):
    warehouse, jsonl = env
    resources = {"ops_locations": OpsLocations(source_url="unused.duckdb", warehouse_url=str(warehouse))}
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(warehouse)!r}); "
                               "print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with dg.DagsterInstance.ephemeral() as instance:
            result = alerts_timer(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(result, dg.SkipReason) and "locked" in result.skip_message
    finally:
        holder.kill()
        holder.wait()
    assert sent(jsonl) == []


def test_the_cli_silences_a_rule_and_checks_the_rules_file(env, monkeypatch, capsys, tmp_path):
    from orchestration.lib.cli import main

    warehouse, jsonl = env
    monkeypatch.setenv("OPS_WAREHOUSE_URL", str(warehouse))
    assert main(["alerts", "silence", "--rule", "queue_depth_high", "--for", "2h", "--comment", "queue migration"]) == 0
    assert "queue_depth_high" in capsys.readouterr().out
    assert main(["alerts", "silences"]) == 0
    assert "active silences: 1" in capsys.readouterr().out

    # the test warehouse holds only the raw tables these two rules read: the others are not evaluated
    assert main(["alerts", "run", "--only", "queue_depth_high,stale_source"]) == 0
    out = capsys.readouterr().out
    # silenced: recorded as firing, not sent; the stale source (not matched) is sent
    assert [n["rule"] for n in sent(jsonl)] == ["stale_source"]
    assert main(["alerts", "status"]) == 0
    status = capsys.readouterr().out
    assert "queue_depth_high" in status and "silenced:sil_" in status and "firing alerts: 2" in status, out + status

    assert main(["alerts", "silence", "--for", "1h"]) == 2  # no matcher: refused, not a silence of everything
    assert "empty matcher" in capsys.readouterr().err

    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - name: x\n    kind: sql\n    condition: '>> 3'\n    sql: select 1, 1\n")
    assert main(["alerts", "check", "--rules", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4" in err and "condition" in err, err
