"""Error correlation, shutdown episodes, recovery and the checklist marts on a simulated month.

Uses the session fixture ``simulated_warehouses`` (tests/conftest.py): 30 simulated days (seed 5)
in a PostgreSQL source, extracted into a DuckDB and a PostgreSQL warehouse, ``dbt build`` on both
with ``as_of`` = the end of the data. The injected incidents' ground truth is compared with what
the marts detect; the two targets must agree row for row; the checklist marts must equal the
checklist's own SQL run on the source.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from orchestration.lib import checklist

TARGETS = ("duckdb", "postgres")
TOLERANCE = dt.timedelta(minutes=15)

# every model this module covers, with the columns that order its rows deterministically
MODELS = {
    "intermediate.int_corr_family_hour_diffs": "event_family, hour_index",
    "intermediate.int_recovery_incidents": "subject_type, subject, started_at",
    "marts.mart_error_correlation": "family_a, family_b",
    "marts.mart_error_correlation_wide": "family_rank",
    "marts.mart_shutdown_episodes": "shutdown_start_at",
    "marts.mart_shutdown_causes": "cause_type, cause",
    "marts.mart_error_recovery": "subject_type, subject",
    "marts.mart_checklist_job_failure_rates": "job_name",
    "marts.mart_checklist_shutdown_causes": "event_type, component",
}


def _ts(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return dt.datetime.fromisoformat(value).astimezone(dt.timezone.utc)


def family(event_type: str) -> str:
    """The folding of int_corr_event_families."""
    name = event_type.lower()
    if name.endswith("_job_execution_failed") and len(name) > len("_job_execution_failed"):
        return "job_execution_failed"
    if name.endswith("_consecutive_failures") and len(name) > len("_consecutive_failures"):
        return "consecutive_failures"
    if name.startswith("error_") and len(name) > 6:
        return name[6:]
    return name


def _normalise(value):
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, Decimal):
        return round(float(value), 9)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return value


def _rows(sw, kind: str, sql: str) -> list[tuple]:
    return [tuple(_normalise(v) for v in row) for row in sw.query(kind, sql)]


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


# ---------------------------------------------------------------------------------------------
# shutdowns


def _episodes(sw, kind: str) -> list[tuple[dt.datetime, dt.datetime | None]]:
    return [(_ts(s), None if e is None else _ts(e)) for s, e in sw.query(
        kind, "select shutdown_start_at, shutdown_end_at from marts.mart_shutdown_episodes order by 1")]


def _shutdown_truths(sw) -> list[dict]:
    truths = sw.incidents_of("silent_shutdown") + sw.incidents_of("circuit_breaker_stuck")
    assert len(truths) >= 2, "the simulated month should hold injected shutdowns"
    return truths


@pytest.mark.parametrize("kind", TARGETS)
def test_each_injected_shutdown_is_detected_within_15_minutes(simulated_warehouses, kind):
    sw = simulated_warehouses
    episodes = _episodes(sw, kind)
    for truth in _shutdown_truths(sw):
        start, end = _ts(truth["start"]), _ts(truth["end"])
        matches = [
            (s, e) for s, e in episodes
            if abs(s - start) <= TOLERANCE and e is not None and abs(e - end) <= TOLERANCE
        ]
        assert len(matches) == 1, (truth, episodes)


@pytest.mark.parametrize("kind", TARGETS)
def test_no_shutdown_detected_outside_the_injected_ones(simulated_warehouses, kind):
    sw = simulated_warehouses
    truths = [(_ts(t["start"]), _ts(t["end"])) for t in _shutdown_truths(sw)]
    extra = [
        (s, e) for s, e in _episodes(sw, kind)
        if not any(abs(s - ts) <= TOLERANCE and e is not None and abs(e - te) <= TOLERANCE
                   for ts, te in truths)
    ]
    assert extra == []


def test_shutdown_episodes_carry_the_blocking_reason_and_alive_evidence(simulated_warehouses):
    sw = simulated_warehouses
    rows = sw.query("postgres", """
        select shutdown_start_at, dominant_block_reason, n_alive_signals, max_silence_minutes
        from marts.mart_shutdown_episodes""")
    for truth in _shutdown_truths(sw):
        start = _ts(truth["start"])
        (reason, alive, silence), = [r[1:] for r in rows if abs(_ts(r[0]) - start) <= TOLERANCE]
        assert reason == truth["details"]["reason"]
        assert alive > 0 and silence <= 30


def test_shutdown_causes_rank_the_injected_reasons(simulated_warehouses):
    sw = simulated_warehouses
    reasons = {r: n for r, n in sw.query(
        "postgres", "select cause, n_episodes from marts.mart_shutdown_causes where cause_type = 'block_reason'")}
    truths = _shutdown_truths(sw)
    for reason in {t["details"]["reason"] for t in truths}:
        assert reasons.get(reason, 0) >= sum(1 for t in truths if t["details"]["reason"] == reason)


# ---------------------------------------------------------------------------------------------
# correlation


@pytest.mark.parametrize("kind", TARGETS)
def test_the_injected_cause_effect_pair_leads_with_the_right_lag(simulated_warehouses, kind):
    sw = simulated_warehouses
    incidents = sw.incidents_of("cause_effect")
    assert incidents
    for incident in incidents:
        details = incident["details"]
        cause, effect = family(details["cause"]), family(details["effect"])
        lag_hours = round(details["lag_minutes"] / 60)
        rows = sw.query(kind, f"""
            select best_lag_hours, a_leads_b, lead_rank, best_lag_r
            from marts.mart_error_correlation
            where family_a = '{cause}' and family_b = '{effect}'""")
        assert len(rows) == 1, (cause, effect)
        best_lag, leads, lead_rank, r = rows[0]
        assert leads is True and best_lag == lag_hours, rows
        assert lead_rank is not None and lead_rank <= 3, rows
        assert r > 0.3
        # the reverse row: same r, opposite lag, does not lead
        (rev_lag, rev_leads), = sw.query(kind, f"""
            select best_lag_hours, a_leads_b from marts.mart_error_correlation
            where family_a = '{effect}' and family_b = '{cause}'""")
        assert rev_lag == -lag_hours and rev_leads is False


def test_correlation_wide_matrix_matches_the_long_mart(simulated_warehouses):
    sw = simulated_warehouses
    wide = sw.query("duckdb", "select * from marts.mart_error_correlation_wide order by family_rank")
    assert 2 <= len(wide) <= 10
    names = [row[1] for row in wide]
    long = {(a, b): r for a, b, r in sw.query(
        "duckdb", "select family_a, family_b, best_lag_r from marts.mart_error_correlation")}
    for row in wide:
        for k, b in enumerate(names):
            cell = row[3 + k]
            expected = 1.0 if b == row[1] else long.get((row[1], b))
            assert (cell is None and expected is None) or abs(cell - expected) < 1e-12


# ---------------------------------------------------------------------------------------------
# recovery


def test_injected_job_failure_streaks_are_incidents_that_recover(simulated_warehouses):
    sw = simulated_warehouses
    streaks = sw.incidents_of("job_failure_streak")
    assert streaks
    rows = sw.query("postgres", """
        select subject, started_at, recovered_at, n_errors from intermediate.int_recovery_incidents
        where subject_type = 'job'""")
    for truth in streaks:
        job, start, end = truth["subject"], _ts(truth["start"]), _ts(truth["end"])
        matches = [r for r in rows if r[0] == job and abs(_ts(r[1]) - start) <= TOLERANCE]
        assert len(matches) == 1, truth
        _, _, recovered_at, n_errors = matches[0]
        assert n_errors >= truth["details"]["streak_length"]
        assert recovered_at is not None and abs(_ts(recovered_at) - end) <= TOLERANCE, (truth, matches)


def test_recovery_mart_keeps_unrecovered_incidents(simulated_warehouses):
    sw = simulated_warehouses
    (n_incidents, n_unrecovered), = sw.query(
        "duckdb", "select sum(n_incidents), sum(n_unrecovered) from marts.mart_error_recovery")
    (total, open_), = sw.query(
        "duckdb",
        "select count(*), count(case when not is_recovered then 1 end) from intermediate.int_recovery_incidents")
    assert (n_incidents, n_unrecovered) == (total, open_)


# ---------------------------------------------------------------------------------------------
# both targets


@pytest.mark.parametrize("relation", sorted(MODELS))
def test_duckdb_and_postgres_are_identical(simulated_warehouses, relation):
    sw = simulated_warehouses
    sql = f"select * from {relation} order by {MODELS[relation]}"
    duck, pg = _sorted(_rows(sw, "duckdb", sql)), _sorted(_rows(sw, "postgres", sql))
    assert duck, relation
    assert duck == pg


# ---------------------------------------------------------------------------------------------
# the checklist's own SQL on the source


def _source(sw, sql: str) -> list[tuple]:
    with psycopg.connect(sw.source.dsn) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(checklist.pinned(sql, sw.as_of)).fetchall()


@pytest.mark.parametrize("kind", TARGETS)
def test_job_failure_rates_equal_the_checklist_sql(simulated_warehouses, kind):
    sw = simulated_warehouses
    expected = _sorted([tuple(_normalise(v) for v in r) for r in _source(sw, checklist.JOB_FAILURE_RATES)])
    actual = _sorted(_rows(sw, kind, """
        select job_name, failures, successes, failure_rate_pct
        from marts.mart_checklist_job_failure_rates where is_in_checklist"""))
    assert actual == expected


# system_events has a `component` column: PostgreSQL binds `GROUP BY component` to it (input
# columns win over output aliases), so the verbatim query fails ("event_data must appear in the
# GROUP BY clause"). Its evident intent — group by the selected expression — is GROUP BY 1, 2.
SHUTDOWN_CAUSES_AS_MEANT = checklist.SHUTDOWN_CAUSES.replace(
    "GROUP BY event_type, component", "GROUP BY 1, 2")


def test_the_verbatim_shutdown_causes_query_fails_on_the_real_schema(simulated_warehouses):
    assert SHUTDOWN_CAUSES_AS_MEANT != checklist.SHUTDOWN_CAUSES
    with pytest.raises(psycopg.errors.GroupingError):
        _source(simulated_warehouses, checklist.SHUTDOWN_CAUSES)


@pytest.mark.parametrize("kind", TARGETS)
def test_shutdown_causes_equal_the_checklist_sql(simulated_warehouses, kind):
    sw = simulated_warehouses
    expected = _sorted([tuple(_normalise(v) for v in r) for r in _source(sw, SHUTDOWN_CAUSES_AS_MEANT)])
    actual = _sorted(_rows(sw, kind, """
        select event_type, component, shutdown_count
        from marts.mart_checklist_shutdown_causes where is_in_checklist"""))
    assert expected and actual == expected
