"""Error correlation, shutdown episodes, recovery and the checklist marts on a simulated month.

Uses the session fixture ``simulated_warehouses`` (tests/conftest.py): 30 simulated days (seed 5)
in a PostgreSQL source, extracted into a DuckDB and a PostgreSQL warehouse, ``dbt build`` on both
with ``as_of`` = the end of the data. The injected incidents' ground truth is compared with what
the marts detect; the two targets must agree row for row; the checklist marts must equal the
checklist's own SQL run on the source.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import psycopg
import pytest
from dbquery import error_family, normalised_rows, query_location, run_dbt_duckdb, utc

from orchestration.lib import checklist
from orchestration.lib.settings import Location

TARGETS = ("duckdb", "postgres")
TOLERANCE = dt.timedelta(minutes=15)

# every model this module covers, with the columns that order its rows deterministically
MODELS = {
    "intermediate.int_corr_family_hour_diffs": "error_family, hour_index",
    "intermediate.int_error_family_co_logging": "family_a, family_b",
    "intermediate.int_recovery_incidents": "subject_type, subject, started_at",
    "marts.mart_error_correlation": "family_a, family_b",
    "marts.mart_error_correlation_wide": "family_rank",
    "marts.mart_shutdown_episodes": "shutdown_start_at",
    "marts.mart_shutdown_causes": "cause_type, cause",
    "marts.mart_error_recovery": "subject_type, subject",
    "marts.mart_checklist_job_failure_rates": "job_name",
    "marts.mart_checklist_shutdown_causes": "event_type, component",
}


# ---------------------------------------------------------------------------------------------
# shutdowns


def _episodes(sw, kind: str) -> list[tuple[dt.datetime, dt.datetime | None]]:
    return [(utc(s), None if e is None else utc(e)) for s, e in sw.query(
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
        start, end = utc(truth["start"]), utc(truth["end"])
        matches = [
            (s, e) for s, e in episodes
            if abs(s - start) <= TOLERANCE and e is not None and abs(e - end) <= TOLERANCE
        ]
        assert len(matches) == 1, (truth, episodes)


@pytest.mark.parametrize("kind", TARGETS)
def test_no_shutdown_detected_outside_the_injected_ones(simulated_warehouses, kind):
    sw = simulated_warehouses
    truths = [(utc(t["start"]), utc(t["end"])) for t in _shutdown_truths(sw)]
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
        start = utc(truth["start"])
        (reason, alive, silence), = [r[1:] for r in rows if abs(utc(r[0]) - start) <= TOLERANCE]
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
def test_shutdown_causes_rank_injected_causes_above_background(simulated_warehouses, kind):
    """By the lower bound of the rate ratio: every injected blocking reason ranks above every
    other reason, the breaker's own families (injected with the stuck breakers) above every
    background family, and rank 1 is never shared."""
    sw = simulated_warehouses
    rows = sw.query(kind, "select cause_type, cause, cause_rank, rate_ratio_lower from marts.mart_shutdown_causes")
    injected = {
        "block_reason": {t["details"]["reason"] for t in _shutdown_truths(sw)},
        "error_family": {"circuit_breaker_stuck", "circuit_breaker_watchdog_alert"},
    }
    for cause_type, causes in injected.items():
        ranks = {cause: (rank, lower) for t, cause, rank, lower in rows if t == cause_type}
        assert causes <= set(ranks), (cause_type, ranks)
        assert sorted(rank for rank, _ in ranks.values()) == list(range(1, len(ranks) + 1))  # no ties
        worst_injected = max(ranks[c][0] for c in causes)
        best_background = min((r for c, (r, _) in ranks.items() if c not in causes), default=None)
        assert worst_injected == len(causes), (cause_type, ranks)
        assert best_background is None or best_background > worst_injected
        assert all(ranks[c][1] > 1 for c in causes), ranks  # more often around shutdowns, beyond chance
        assert all(lower < min(ranks[c][1] for c in causes) for c, (_, lower) in ranks.items() if c not in causes)


@pytest.mark.parametrize("kind", TARGETS)
def test_the_injected_cause_effect_pair_leads_with_the_right_lag(simulated_warehouses, kind):
    sw = simulated_warehouses
    incidents = sw.incidents_of("cause_effect")
    assert incidents
    for incident in incidents:
        details = incident["details"]
        cause, effect = error_family(details["cause"]), error_family(details["effect"])
        lag_hours = round(details["lag_minutes"] / 60)
        rows = sw.query(kind, f"""
            select best_lag_hours, a_leads_b, lead_rank, best_lag_r
            from marts.mart_error_correlation
            where family_a = '{cause}' and family_b = '{effect}'""")
        assert len(rows) == 1, (cause, effect)
        best_lag, leads, lead_rank, r = rows[0]
        assert leads is True and best_lag == lag_hours, rows
        assert lead_rank == 1, rows
        assert r > 0.3
        # the reverse row: same r, opposite lag, does not lead
        (rev_lag, rev_leads), = sw.query(kind, f"""
            select best_lag_hours, a_leads_b from marts.mart_error_correlation
            where family_a = '{effect}' and family_b = '{cause}'""")
        assert rev_lag == -lag_hours and rev_leads is False


@pytest.mark.parametrize("kind", TARGETS)
def test_the_injected_cause_effect_pair_is_the_first_cause(simulated_warehouses, kind):
    """Among the pairs that are not synonyms (nor repeat a pair through a synonym), the injected
    cause → effect pair is cause_rank 1, significant after the false discovery correction."""
    sw = simulated_warehouses
    pairs = {(error_family(i["details"]["cause"]), error_family(i["details"]["effect"]))
             for i in sw.incidents_of("cause_effect")}
    assert len(pairs) == 1
    (cause, effect), = pairs
    (first,) = sw.query(kind, """
        select family_a, family_b, q_value, is_synonym_pair, is_folded_duplicate
        from marts.mart_error_correlation where cause_rank = 1""")
    assert first[:2] == (cause, effect), first
    assert first[2] < 0.05 and first[3] is False and first[4] is False
    # the pairs that rank: significant, positive lag, no synonyms; no ties
    bad = sw.query(kind, """
        select family_a, family_b from marts.mart_error_correlation
        where cause_rank is not null
          and (not a_leads_b or is_synonym_pair or is_folded_duplicate or is_via_wider_family
               or q_value >= 0.05 or best_lag_hours <= 0)""")
    assert bad == []
    (n, n_distinct), = sw.query(kind, """
        select count(cause_rank), count(distinct cause_rank) from marts.mart_error_correlation""")
    assert n == n_distinct > 0



@pytest.mark.parametrize("kind", TARGETS)
def test_a_lead_through_a_wider_family_repeats_the_narrower_one(simulated_warehouses, kind):
    """posting_attempt_failed logs every post_failed and reply_failed besides its own (co-logged
    one way only: no synonym). The cause's lead to it is the cause → post_failed finding again:
    flagged, naming the narrower family, and it takes no cause_rank (it took rank 2 before)."""
    sw = simulated_warehouses
    (cause, effect), = {(error_family(i["details"]["cause"]), error_family(i["details"]["effect"]))
                        for i in sw.incidents_of("cause_effect")}
    (row,) = sw.query(kind, f"""
        select a_leads_b, is_synonym_pair, is_via_wider_family, via_narrower_family, cause_rank,
               co_logged_share_b
        from marts.mart_error_correlation
        where family_a = '{cause}' and family_b = 'posting_attempt_failed'""")
    leads, synonym, via_wider, narrower, rank, share_of_wider = row
    assert leads is True and synonym is False and share_of_wider < 0.9, row
    effect_names = {effect} | {b for a, b in KNOWN_SYNONYMS if a == effect} | {a for a, b in KNOWN_SYNONYMS if b == effect}
    assert via_wider is True and narrower in effect_names and rank is None, row
    (ranked_wider,) = sw.query(kind, """
        select count(*) from marts.mart_error_correlation where is_via_wider_family and cause_rank is not null""")
    assert ranked_wider == (0,)

# the same failure written by two writers: the posting queue's POST_FAILED / REPLY_FAILED and the
# error tracker's error_post_failure / error_reply_failure (simulator posting.py)
KNOWN_SYNONYMS = {("post_failed", "post_failure"), ("reply_failed", "reply_failure")}


@pytest.mark.parametrize("kind", TARGETS)
def test_synonym_pairs_are_flagged_and_never_lead(simulated_warehouses, kind):
    sw = simulated_warehouses
    rows = sw.query(kind, """
        select family_a, family_b, a_leads_b, synonym_reason, cause_rank, q_value
        from marts.mart_error_correlation where is_synonym_pair""")
    flagged = {(a, b) for a, b, *_ in rows}
    assert {p for p in flagged if p[0] < p[1]} == KNOWN_SYNONYMS
    assert {(b, a) for a, b in KNOWN_SYNONYMS} <= flagged  # both directions
    assert all(leads is False and reason and rank is None and q is None for _, _, leads, reason, rank, q in rows)
    # a synonym folds onto one representative: pairs through the other one are duplicates
    folded = dict(sw.query(kind, "select family_a, family_a_folded from marts.mart_error_correlation"))
    for a, b in KNOWN_SYNONYMS:
        assert folded[a] == folded[b] in (a, b)
    (dup_ranked,) = sw.query(kind, """
        select count(*) from marts.mart_error_correlation where is_folded_duplicate and cause_rank is not null""")
    assert dup_ranked == (0,)


@pytest.mark.parametrize("kind", TARGETS)
def test_synonym_pairs_are_caught_by_the_event_level_test(simulated_warehouses, kind):
    """The two writers log one failure milliseconds apart on one decision: every event of each
    synonym has its partner (shares 1.0 on the simulated month), so the co-logged test flags the
    pair on its own, and the reason gives the shares. The injected cause precedes its effect by
    about an hour: never co-logged, so the pair stays a cause."""
    sw = simulated_warehouses
    rows = {(a, b): rest for a, b, *rest in sw.query(kind, """
        select family_a, family_b, synonym_test, co_logged_share_a, co_logged_share_b, synonym_reason
        from marts.mart_error_correlation""")}
    for a, b in KNOWN_SYNONYMS | {(b, a) for a, b in KNOWN_SYNONYMS}:
        test, share_a, share_b, reason = rows[(a, b)]
        assert test in ("co_logged", "hourly_and_co_logged"), (a, b, test)
        assert share_a >= 0.9 and share_b >= 0.9, (a, b, share_a, share_b)
        assert f"co-logged (same decision or job within 5 s) for {int(100 * share_a + 0.5)}% of {a} and " \
               f"{int(100 * share_b + 0.5)}% of {b}" in reason, reason
    # a co-logged synonym is one on both sides: each family's events mostly have a partner
    flagged = [(a, b, r[1], r[2]) for (a, b), r in rows.items() if r[0] in ("co_logged", "hourly_and_co_logged")]
    assert flagged and all(sa >= 0.9 and sb >= 0.9 for _, _, sa, sb in flagged), flagged
    # the shares are those of the intermediate model (absent pair: 0)
    co_logging = {(a, b): (sa, sb) for a, b, sa, sb in sw.query(kind, """
        select family_a, family_b, co_logged_share_a, co_logged_share_b
        from intermediate.int_error_family_co_logging""")}
    assert all(co_logging.get(pair, (0.0, 0.0)) == pytest.approx(tuple(r[1:3])) for pair, r in rows.items())
    (cause, effect), = {(error_family(i["details"]["cause"]), error_family(i["details"]["effect"]))
                        for i in sw.incidents_of("cause_effect")}
    test, share_a, share_b, _ = rows[(cause, effect)]
    assert test is None and share_a < 0.05 and share_b < 0.05, (cause, effect, share_a, share_b)


@pytest.mark.parametrize("kind", TARGETS)
def test_weak_lagged_correlations_do_not_lead(simulated_warehouses, kind):
    """a_leads_b needs significance: r around 0.1 over a month of hours is not enough."""
    (n_weak,) = simulated_warehouses.query(kind, """
        select count(*) from marts.mart_error_correlation where a_leads_b and best_lag_r < 0.1""")
    assert n_weak == (0,)


def test_correlation_wide_matrix_matches_the_long_mart(simulated_warehouses):
    sw = simulated_warehouses
    wide = sw.query("duckdb", "select * from marts.mart_error_correlation_wide order by family_rank")
    assert 2 <= len(wide) <= 10
    names = [row[1] for row in wide]
    columns = [c for (c,) in sw.query("duckdb", """
        select column_name from information_schema.columns
        where table_schema = 'marts' and table_name = 'mart_error_correlation_wide'
        order by ordinal_position""")]
    assert columns[3:] == [f"r_{name}" for name in names]  # readable: named after the partner family
    synonyms = {b for _, b in KNOWN_SYNONYMS} | {a for a, _ in KNOWN_SYNONYMS}
    assert len(synonyms & set(names)) <= 2  # folded: at most one of each synonym pair
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
        job, start, end = truth["subject"], utc(truth["start"]), utc(truth["end"])
        matches = [r for r in rows if r[0] == job and abs(utc(r[1]) - start) <= TOLERANCE]
        assert len(matches) == 1, truth
        _, _, recovered_at, n_errors = matches[0]
        assert n_errors >= truth["details"]["streak_length"]
        assert recovered_at is not None and abs(utc(recovered_at) - end) <= TOLERANCE, (truth, matches)


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
    schema, table = relation.split(".")
    columns = [name for (name,) in sw.query("duckdb", f"""
        select column_name from information_schema.columns
        where table_schema = '{schema}' and table_name = '{table}' order by ordinal_position""")
        # which dbt invocation wrote the row and the load stamps it had seen: differ by design
        if name not in ("_build_id", "source_loaded_through")]
    sql = f"select {', '.join(columns)} from {relation} order by {MODELS[relation]}"
    duck, pg = normalised_rows(sw.query("duckdb", sql)), normalised_rows(sw.query("postgres", sql))
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
    expected = normalised_rows(_source(sw, checklist.JOB_FAILURE_RATES))
    actual = normalised_rows(sw.query(kind, """
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
    expected = normalised_rows(_source(sw, SHUTDOWN_CAUSES_AS_MEANT))
    actual = normalised_rows(sw.query(kind, """
        select event_type, component, shutdown_count
        from marts.mart_checklist_shutdown_causes where is_in_checklist"""))
    assert expected and actual == expected


# ---------------------------------------------------------------------------------------------
# incremental shutdown episodes


def test_incremental_shutdown_episodes_match_the_full_build(simulated_warehouses, tmp_path):
    """Full-build the episodes up to 5 days before as_of on a copy of the DuckDB warehouse, then
    run them incrementally by days and by hours up to as_of (each run recomputing from its
    anchor): the rows must equal the fixture's full build, and a rerun must change nothing."""
    sw = simulated_warehouses
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(sw.warehouses["duckdb"].path, copy)
    as_of = utc(sw.as_of)
    select = ["--select", "mart_shutdown_episodes"]
    # two daily and two hourly steps: each dbt call parses the project afresh (its vars change), ~15 s
    steps = [as_of - dt.timedelta(days=d) for d in (3, 1)] + [as_of - dt.timedelta(hours=h) for h in (1, 0)]
    sql = "select * from marts.mart_shutdown_episodes"
    run_dbt_duckdb(["run", *select, "--full-refresh", "--vars", json.dumps({"as_of": (as_of - dt.timedelta(days=5)).isoformat()})],
                   copy, tmp_path / "t")
    before = query_location(Location.parse(str(copy)), sql)
    for step in steps + [as_of]:  # the last step reruns as_of
        run_dbt_duckdb(["run", *select, "--vars", json.dumps({"as_of": step.isoformat()})], copy, tmp_path / "t")
    incremental = normalised_rows(query_location(Location.parse(str(copy)), sql))
    full = normalised_rows(sw.query("duckdb", sql))
    assert len(before) < len(full)  # the steps had episodes to add
    assert incremental == full
