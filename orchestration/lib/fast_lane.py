"""The alert fast lane: every few minutes, extract the new rows, build only what the alert rules
read, evaluate the rules. The hourly job (extract_and_build) keeps doing everything else.

What the rules read (``ledger.BUILTIN_EVALUATORS`` and the relations of ``alerts/rules.yml``):

=========================================  =============================================================
relation                                   rules
=========================================  =============================================================
marts.fct_system_events                    critical_errors, critical_events, errors_per_hour,
                                           circuit_breaker; custom job_errors_per_2h
marts.mart_shutdown_episodes               system_shutdown
intermediate.int_job_runs                  consecutive_job_failures (and stale_job's recomputation)
marts.mart_job_performance                 stale_job
marts.mart_posting_health_hourly           null_tweet_ids (the hour in progress too); custom posting_blocked
marts.mart_error_trends_hourly             error_rate_increase
raw._extract_state                         stale_source (written by the extraction itself)
=========================================  =============================================================

These models carry the dbt tag ``alert_lane`` (dbt_project.yml); the lane builds ``+tag:alert_lane``
(them and everything upstream, the two small seeds they read included: a lane run may come before
the first hourly run) without data tests. Not in the lane: ``mart_error_templates`` (new_error_template: the template
miner) and ``mart_anomalies`` (anomaly: the detector); their rules read what the hourly job left.

Every source table is extracted (the models above read all five), incrementally and without the
full reconcile (that stays hourly, when due).

The same steps run in Dagster (job ``alert_fast_lane``, orchestration/defs/fast_lane.py; its
success hands the run to the alert sensor ``alerts_after_warehouse_update``, which ticks the
rules) and in-process (:func:`run_fast_lane`: ``ops-warehouse bench latency``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from orchestration.lib.settings import DBT_PROJECT_DIR, Location

ALERT_LANE_TAG = "alert_lane"
# dbt selection of the lane: the tagged models and their parents
DBT_SELECT = f"+tag:{ALERT_LANE_TAG}"
JOB_NAME = "alert_fast_lane"


def lane_tables() -> tuple[str, ...]:
    from orchestration.lib.extract.raw_schema import TABLES

    return tuple(TABLES)


def lane_cron(minutes: int) -> str:
    """The schedule of a lane every ``minutes`` (dividing 60)."""
    return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"


def dbt_lane_args(as_of: str | None = None) -> list[str]:
    """``dbt build`` of the lane's models, no data tests nor unit tests."""
    from orchestration.lib.build import dbt_build_args, time_floor_var

    args = dbt_build_args(as_of, extra_vars=time_floor_var(), select=DBT_SELECT)
    return args + ["--exclude-resource-type", "test"]


@dataclass
class LaneResult:
    at: datetime
    extract_seconds: float
    build_seconds: float
    tick_seconds: float
    rows_inserted: dict[str, int] = field(default_factory=dict)
    tick_summary: str = ""

    @property
    def seconds(self) -> float:
        return self.extract_seconds + self.build_seconds + self.tick_seconds


def run_fast_lane(source: Location, warehouse: Location, channels, *, now: datetime | None = None,
                  run_id: str | None = None, target_path: Path | None = None,
                  rules=None, silences_path: Path | None = None) -> LaneResult:
    """One pass of the lane: extract every table (incremental, no full reconcile), build the lane's
    dbt models as of ``now`` (default: the end of the extraction), then one alert tick at ``now``
    (the same ``run_tick`` the alert sensors call)."""
    from orchestration.lib.alerts.tick import run_tick
    from orchestration.lib.build import publish_partial_parse, run_dbt
    from orchestration.lib.extract.engine import ExtractRequest, extract_table

    started = time.perf_counter()
    inserted = {}
    for table in lane_tables():
        result = extract_table(source, warehouse, table, ExtractRequest(reconcile=False), run_id=run_id)
        inserted[table] = result.rows_inserted
    extracted = time.perf_counter()
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="ops_lane_dbt_") as tmp:
        # without ``now`` the models end at the dbt invocation's start (a second or two after
        # ``at``, past every extracted row), as in the Dagster job: the same --vars every pass, so
        # dbt reuses the previous pass's parse (~3 s) instead of parsing the project (~13 s)
        target, published = Path(target_path or tmp), DBT_PROJECT_DIR / "target"
        publish_partial_parse(published, target)  # the other way round: the last parse seeds this one
        run_dbt(warehouse, dbt_lane_args(at.isoformat() if now is not None else None), target_path=target)
        publish_partial_parse(target, published)
    built = time.perf_counter()
    tick = run_tick(warehouse, at, channels, rules=rules, silences_path=silences_path)
    done = time.perf_counter()
    return LaneResult(at=at, extract_seconds=extracted - started, build_seconds=built - extracted,
                      tick_seconds=done - built, rows_inserted=inserted, tick_summary=tick.summary_line())


__all__ = ["ALERT_LANE_TAG", "DBT_SELECT", "JOB_NAME", "LaneResult", "dbt_lane_args",
           "lane_cron", "lane_tables", "run_fast_lane"]
