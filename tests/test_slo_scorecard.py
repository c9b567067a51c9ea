"""The SLO scorecard (mart_slo_scorecard) on a bad week and a clean week, and on the simulated month.

A 14-day simulation (seed 5) whose first ISO week holds one injected incident of each kind (the
"bad week": a silent shutdown, a stuck circuit breaker, a NULL tweet id burst, a job failure
streak, an error spike, …) and whose second week holds none (the "clean week"), the scorecard and
its parents built on DuckDB. The metrics the incidents move must be missed in the bad week and met in
the clean one. Three metrics are missed in *both* weeks because the simulated bot misses them in
normal operation (error events are ~24% of operation events, jobs overlap ~40% of their run time,
the browser pool is ~50% busy); the test pins that they are a property of the baseline, not of the
incidents. The month fixture (both targets) checks the shutdown count against the injected stalls
and that DuckDB and PostgreSQL agree row for row.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from dbquery import normalised_rows, query_location, run_dbt_duckdb, utc

BAD_WEEK = datetime(2026, 8, 24, tzinfo=timezone.utc)  # a Monday
CLEAN_WEEK = BAD_WEEK + timedelta(days=7)
END = CLEAN_WEEK + timedelta(days=7)

INCIDENT_METRICS = ("shutdowns_per_week", "null_tweet_id_rate", "self_healing_success")
ALWAYS_MET = ("avg_post_minutes", "recovery_minutes")
BASELINE_MISSES = ("error_rate", "job_overlap_share", "browser_pool_utilisation")
NO_DATA = ("db_query_ms", "manual_interventions_per_week", "autonomous_decision_share",
           "learning_integration")


class BadAndCleanWeek:
    def __init__(self, warehouse, incidents):
        self.warehouse = warehouse
        self.incidents = incidents

    def card(self) -> dict[tuple[datetime, str], dict]:
        rows = query_location(self.warehouse, """
            select week_start, metric, status, actual_value, numerator, denominator, no_data_reason,
                   is_complete_week
            from marts.mart_slo_scorecard""")
        keys = ("status", "actual_value", "numerator", "denominator", "no_data_reason", "is_complete_week")
        return {(utc(r[0]), r[1]): dict(zip(keys, r[2:])) for r in rows}


@pytest.fixture(scope="module")
def bad_and_clean_week(tmp_path_factory) -> BadAndCleanWeek:
    from orchestration.lib.extract.engine import extract_all
    from orchestration.lib.settings import Location
    from orchestration.lib.simulator import simulate

    tmp = tmp_path_factory.mktemp("bad_and_clean_week")
    source = Location.parse(str(tmp / "source.duckdb"))
    warehouse = Location.parse(str(tmp / "warehouse.duckdb"))
    summary = simulate(source, days=14, seed=5, end=END, truth_path=tmp / "truth.json",
                       incidents_from=BAD_WEEK, incidents_to=CLEAN_WEEK, incidents_per_day=8 / 7)
    extract_all(source, warehouse)
    # the scorecard and its parents, seeds included; no tests and no template mining (the shared
    # fixture runs every test of these models on both targets, and the scorecard reads no template)
    run_dbt_duckdb(["build", "--select", "+mart_slo_scorecard", "--exclude-resource-type", "test",
                    "--exclude-resource-type", "unit_test", "--vars", json.dumps({"as_of": END.isoformat()})],
                   warehouse.path, tmp / "target")
    return BadAndCleanWeek(warehouse, summary.incidents)


def test_the_bad_week_holds_every_incident_kind_and_the_clean_week_none(bad_and_clean_week):
    kinds = {i["kind"] for i in bad_and_clean_week.incidents}
    assert {"silent_shutdown", "circuit_breaker_stuck", "null_tweet_id_burst",
            "job_failure_streak", "error_spike"} <= kinds
    for incident in bad_and_clean_week.incidents:
        assert BAD_WEEK <= utc(incident["start"]) < CLEAN_WEEK, incident


def test_the_bad_weeks_incident_metrics_are_missed_and_the_clean_weeks_met(bad_and_clean_week):
    card = bad_and_clean_week.card()
    for metric in INCIDENT_METRICS:
        assert card[(BAD_WEEK, metric)]["status"] == "missed", (metric, card[(BAD_WEEK, metric)])
        assert card[(CLEAN_WEEK, metric)]["status"] == "met", (metric, card[(CLEAN_WEEK, metric)])
    for metric in ALWAYS_MET:
        for week in (BAD_WEEK, CLEAN_WEEK):
            assert card[(week, metric)]["status"] == "met", (metric, week, card[(week, metric)])
    assert card[(BAD_WEEK, "shutdowns_per_week")]["actual_value"] == 2  # the shutdown and the stuck breaker
    assert card[(CLEAN_WEEK, "shutdowns_per_week")]["actual_value"] == 0
    assert card[(BAD_WEEK, "null_tweet_id_rate")]["numerator"] >= 8  # the burst injects 8-12
    assert card[(CLEAN_WEEK, "null_tweet_id_rate")]["numerator"] == 0


def test_baseline_misses_are_the_same_in_both_weeks(bad_and_clean_week):
    """Missed in normal operation too: the incidents neither cause nor hide these."""
    card = bad_and_clean_week.card()
    for metric in BASELINE_MISSES:
        bad, clean = card[(BAD_WEEK, metric)], card[(CLEAN_WEEK, metric)]
        assert bad["status"] == clean["status"] == "missed", metric
        assert abs(bad["actual_value"] - clean["actual_value"]) < 0.03, (metric, bad, clean)


def test_unmeasurable_metrics_say_no_data_with_a_reason(bad_and_clean_week):
    card = bad_and_clean_week.card()
    for week in (BAD_WEEK, CLEAN_WEEK):
        assert card[(week, "error_rate")]["is_complete_week"]
        for metric in NO_DATA:
            row = card[(week, metric)]
            assert row["status"] == "no data" and row["actual_value"] is None, (metric, row)
            assert len(row["no_data_reason"] or "") > 20, (metric, row)


def test_null_tweet_id_numbers_match_the_source(bad_and_clean_week):
    """The rate's numerator and denominator are the week's posted decisions, counted directly."""
    card = bad_and_clean_week.card()
    for week in (BAD_WEEK, CLEAN_WEEK):
        posted, nulls = query_location(bad_and_clean_week.warehouse, f"""
            select count(*), count(*) filter (where tweet_id is null or trim(tweet_id) = '')
            from raw.content_generation_metadata_comprehensive
            where lower(trim(status)) = 'posted'
              and posted_at >= cast('{week.isoformat()}' as timestamptz)
              and posted_at < cast('{(week + timedelta(days=7)).isoformat()}' as timestamptz)""")[0]
        row = card[(week, "null_tweet_id_rate")]
        assert (row["numerator"], row["denominator"]) == (nulls, posted), week


# ---------------------------------------------------------------------------------------------
# the simulated month, both targets


@pytest.mark.parametrize("kind", ("duckdb", "postgres"))
def test_month_shutdowns_per_week_count_the_injected_stalls(simulated_warehouses, kind):
    sw = simulated_warehouses
    stalls = sw.incidents_of("silent_shutdown") + sw.incidents_of("circuit_breaker_stuck")
    rows = sw.query(kind, """
        select week_start, actual_value, status from marts.mart_slo_scorecard
        where metric = 'shutdowns_per_week'""")
    assert len(rows) >= 4
    for week_start, actual, status in rows:
        start = utc(week_start)
        injected = sum(1 for s in stalls if start <= utc(s["start"]) < start + timedelta(days=7))
        assert actual == injected, (start, actual, injected)
        assert status == ("met" if injected == 0 else "missed"), (start, status)


def test_month_scorecard_identical_on_duckdb_and_postgres(simulated_warehouses):
    sw = simulated_warehouses
    sql = """select week_start, week_end, n_hours_observed, is_complete_week, metric, target_value,
                    actual_value, numerator, denominator, n_observations, status, no_data_reason
             from marts.mart_slo_scorecard order by week_start, metric"""
    duck, pg = normalised_rows(sw.query("duckdb", sql)), normalised_rows(sw.query("postgres", sql))
    assert len(duck) >= 4 * 12
    assert duck == pg
