"""The alert ledger on DuckDB and PostgreSQL: fire -> repeat -> resolve, idempotent ticks,
inhibition, silences, grouping, and the built-in rules' queries on a small crafted warehouse."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from dbquery import query_location

from orchestration.lib.alerts.ledger import (
    Condition,
    Silence,
    add_silence,
    evaluate,
    load_silences,
    observe,
    run_alerts,
)
from orchestration.lib.alerts.notification import FIRING, JOINS, OPENS, RESOLVED, UPDATES
from orchestration.lib.alerts.rules import BUILTIN_RULES, Grouping, Inhibit, RuleSpec, Threshold, load_rules
from orchestration.lib.db import connect
from orchestration.lib.settings import Location

T0 = datetime(2026, 9, 1, 12, tzinfo=timezone.utc)
H = timedelta(hours=1)
RULES = load_rules(None)
FAIL = "consecutive_job_failures"  # repeat_interval 4h


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path, pg_databases) -> Location:
    if request.param == "duckdb":
        return Location.parse(str(tmp_path / "warehouse.duckdb"))
    return Location.parse(pg_databases.new("wh"))


def cond(rule: str, subject: str, value: float = 5.0, active: bool = True) -> Condition:
    return Condition(rule, subject, value, active, {"note": "x", "n": 2})


def transitions(loc: Location) -> list[tuple]:
    return sorted(query_location(loc, "select transition_id, kind, notified from alerts.transitions"))


def ledger(loc: Location) -> dict[str, tuple]:
    rows = query_location(loc, "select dedup_key, status, first_fired_at, last_notified_at, resolved_at, "
                               "suppressed_by from alerts.ledger order by first_fired_at")
    return {r[0]: r[1:] for r in rows}


def test_fire_repeat_resolve_and_idempotent_ticks(warehouse) -> None:
    [fired] = evaluate(warehouse, [cond(FAIL, "poster")], T0, RULES)
    assert (fired.status, fired.rule, fired.subject, fired.at, fired.since) == (FIRING, FAIL, "poster", T0, T0)
    assert fired.numbers["value"] == 5.0 and fired.numbers["threshold"] == 3 and fired.numbers["n"] == 2
    before = (transitions(warehouse), ledger(warehouse))

    # a retried tick: nothing written, the same transition (delivery sends an id once)
    again = evaluate(warehouse, [cond(FAIL, "poster")], T0, RULES)
    assert [n.transition_id for n in again] == [fired.transition_id]
    assert (transitions(warehouse), ledger(warehouse)) == before

    # still firing, before the repeat interval: nothing
    for t in (T0 + H, T0 + 3 * H + timedelta(minutes=59)):
        assert evaluate(warehouse, [cond(FAIL, "poster")], t, RULES) == []
    assert len(transitions(warehouse)) == 1

    [repeat] = evaluate(warehouse, [cond(FAIL, "poster", 7)], T0 + 4 * H, RULES)
    assert (repeat.status, repeat.since, repeat.at) == (FIRING, T0, T0 + 4 * H)
    assert repeat.transition_id != fired.transition_id and repeat.numbers["value"] == 7
    assert evaluate(warehouse, [cond(FAIL, "poster", 7)], T0 + 5 * H, RULES) == []

    # the condition clears (explicitly inactive, or simply absent): one resolved notice
    [resolved] = evaluate(warehouse, [cond(FAIL, "poster", 0, active=False)], T0 + 6 * H, RULES)
    assert (resolved.status, resolved.since, resolved.at) == (RESOLVED, T0, T0 + 6 * H)
    assert [n.transition_id for n in evaluate(warehouse, [], T0 + 6 * H, RULES)] == [resolved.transition_id]
    assert evaluate(warehouse, [], T0 + 7 * H, RULES) == []
    status, first, notified, resolved_at, _sup = ledger(warehouse)[f"{FAIL}|poster"]
    assert status == "resolved" and resolved_at == T0 + 6 * H and notified == T0 + 6 * H
    assert [k for _t, k, _n in sorted(transitions(warehouse), key=lambda r: r[1])] == ["fired", "repeat", "resolved"]

    # firing again later opens a new alert episode
    [refired] = evaluate(warehouse, [cond(FAIL, "poster")], T0 + 8 * H, RULES)
    assert refired.status == FIRING and refired.since == T0 + 8 * H
    rows = query_location(warehouse, "select status from alerts.ledger order by first_fired_at")
    assert [r[0] for r in rows] == ["resolved", "firing"]


def test_alerts_of_rules_not_evaluated_are_left_alone(warehouse) -> None:
    evaluate(warehouse, [cond(FAIL, "poster"), cond("anomaly", "errors_total")], T0, RULES)
    only_anomaly = [r for r in RULES if r.name == "anomaly"]
    [n] = evaluate(warehouse, [], T0 + H, only_anomaly)
    assert (n.rule, n.status) == ("anomaly", RESOLVED)
    assert ledger(warehouse)[f"{FAIL}|poster"][0] == "firing"


def test_inhibition_suppresses_exactly_the_alerts_it_explains(warehouse) -> None:
    conditions = [cond("system_shutdown", "system", 1), cond(FAIL, "poster"), cond("stale_job", "scraper"),
                  cond("anomaly", "errors_total"), cond("critical_errors", "system")]
    notes = evaluate(warehouse, conditions, T0, RULES)
    assert sorted(n.rule for n in notes) == ["anomaly", "critical_errors", "system_shutdown"]
    led = ledger(warehouse)
    assert led[f"{FAIL}|poster"][0] == "firing" and led[f"{FAIL}|poster"][2] is None
    assert led[f"{FAIL}|poster"][4] == "inhibited:system_shutdown|system"
    assert led["stale_job|scraper"][4] == "inhibited:system_shutdown|system"
    assert led["anomaly|errors_total"][4] is None
    assert sorted(n for _t, _k, n in transitions(warehouse)) == [False, False, True, True, True]

    # the shutdown ends while the job still fails: the shutdown resolves, the job is notified now;
    # the stale job cleared while inhibited: no resolved notice for an alert never sent
    still = [cond(FAIL, "poster"), cond("anomaly", "errors_total"), cond("critical_errors", "system")]
    notes = evaluate(warehouse, still, T0 + H / 2, RULES)  # before any 1h repeat
    assert sorted((n.rule, n.status) for n in notes) == [(FAIL, FIRING), ("system_shutdown", RESOLVED)]
    assert ledger(warehouse)["stale_job|scraper"][0] == "resolved"


def test_same_subject_inhibition(warehouse) -> None:
    rules = [*RULES, RuleSpec("job_down", "sql", Threshold(">", 0), H, sql="select 1, 1",
                              inhibits=(Inhibit(FAIL, "same_subject"),))]
    notes = evaluate(warehouse, [cond("job_down", "poster"), cond(FAIL, "poster"), cond(FAIL, "scraper")], T0, rules)
    assert sorted((n.rule, n.subject) for n in notes) == [(FAIL, "scraper"), ("job_down", "poster")]


def test_silences_suppress_what_they_match_within_their_bounds(warehouse, tmp_path) -> None:
    add_silence(warehouse, {"rule": FAIL, "subject": "post*"}, T0 + H, T0 + 3 * H, "ops", "deploy")
    add_silence(warehouse, {"rule": FAIL, "subject": "post*"}, T0 + H, T0 + 3 * H, "ops", "deploy")  # once
    assert query_location(warehouse, "select count(*) from alerts.silences") == [(1,)]
    file = tmp_path / "silences.yml"
    file.write_text("- matcher: {scope: errors}\n  starts_at: 2026-09-01T13:00:00Z\n  ends_at: 2026-09-01T14:00:00Z\n")
    file_silences = load_silences(file)
    conditions = [cond(FAIL, "poster"), cond(FAIL, "scraper"), cond("anomaly", "s1"), cond("stale_job", "poster")]

    # before the silences start: everything is sent
    assert len(evaluate(warehouse, conditions[:1], T0, RULES, file_silences)) == 1
    # within: only what no silence matches (the anomaly rule carries the label scope=errors)
    notes = evaluate(warehouse, conditions, T0 + H, RULES, file_silences)
    assert sorted((n.rule, n.subject) for n in notes) == [(FAIL, "scraper"), ("stale_job", "poster")]
    led = ledger(warehouse)
    assert led["anomaly|s1"][4].startswith("silenced:") and led[f"{FAIL}|poster"][4].startswith("silenced:")
    # poster's repeat falls due at T0+4h; the file silence ended at T0+2h, so the anomaly is sent then
    notes = evaluate(warehouse, conditions, T0 + 2 * H, RULES, file_silences)
    assert [(n.rule, n.subject) for n in notes] == [("anomaly", "s1")]
    assert evaluate(warehouse, conditions, T0 + 3 * H, RULES, file_silences) == []  # ends_at is exclusive
    notes = evaluate(warehouse, conditions, T0 + 4 * H, RULES, file_silences)
    assert [(n.rule, n.subject) for n in notes] == [(FAIL, "poster")]
    # an expired silence does not suppress
    notes = evaluate(warehouse, [*conditions, cond("new_error_template", "t1")], T0 + 5 * H, RULES,
                     [Silence({"rule": "new_error_template"}, T0, T0 + 5 * H)])
    assert [n.subject for n in notes if n.rule == "new_error_template"] == ["t1"]


def test_grouping_keys(warehouse) -> None:
    """Paging rules share the open incident group; a digest rule's notifications are grouped per
    rule and evaluation (split by its group_by); with grouping disabled, every rule is."""
    rules = [replace(r, group_by=("subject",)) if r.name == "stale_job" else r for r in RULES]
    notes = evaluate(warehouse, [cond(FAIL, "a"), cond(FAIL, "b"), cond("stale_job", "a"), cond("stale_job", "b"),
                                 cond("anomaly", "a")], T0, rules)
    keys = {(n.rule, n.subject): n.group_key for n in notes}
    assert keys[(FAIL, "a")] == keys[(FAIL, "b")] == keys[("anomaly", "a")]  # one incident across rules
    assert keys[(FAIL, "a")] == f"incident|{notes[0].incident}" and notes[0].incident.startswith("inc_")
    assert keys[("stale_job", "a")] != keys[("stale_job", "b")]  # digest: per rule and subject
    assert not keys[("stale_job", "a")].startswith("incident|")
    later = evaluate(warehouse, [], T0 + H, rules)
    assert {n.status for n in later} == {RESOLVED}
    assert {n.group_key for n in later if n.rule != "stale_job"} == {keys[(FAIL, "a")]}  # resolved: its incident
    assert keys[("stale_job", "a")] not in {n.group_key for n in later}  # one evaluation, one group

    off = evaluate(warehouse, [cond(FAIL, "c"), cond("anomaly", "c")], T0 + 9 * H, rules,
                   grouping=Grouping(enabled=False))
    assert len({n.group_key for n in off}) == 2 and {n.incident for n in off} == {None}


def test_incident_groups_across_rules_and_ticks(warehouse) -> None:
    """A second rule firing while the incident is open joins its group; a retried tick gives the
    same group keys and writes nothing; resolved notices join it; a firing a window (2 h) after
    its last activity opens a new one."""
    from orchestration.lib.alerts.channels import _group_title

    shutdown, anomaly = cond("system_shutdown", "system", 1), cond("anomaly", "errors_total")
    [opened] = evaluate(warehouse, [shutdown], T0, RULES)
    assert (opened.incident_role, opened.group_key) == (OPENS, f"incident|{opened.incident}")
    assert _group_title([opened]).startswith(f"[CRITICAL] new incident {opened.incident}: ")

    notes = evaluate(warehouse, [shutdown, anomaly], T0 + H, RULES)  # the shutdown's 1 h repeat, a new rule
    assert {(n.rule, n.incident_role) for n in notes} == {("system_shutdown", UPDATES), ("anomaly", JOINS)}
    assert {n.group_key for n in notes} == {opened.group_key}
    assert f"update to incident {opened.incident} (+rule anomaly)" in _group_title(notes)
    groups = query_location(warehouse, "select group_id, opened_at, last_active_at from alerts.incident_groups")
    assert evaluate(warehouse, [shutdown, anomaly], T0 + H, RULES) == notes  # a retried tick
    assert query_location(warehouse, "select group_id, opened_at, last_active_at from alerts.incident_groups") \
        == groups == [(opened.incident, T0, T0 + H)]

    resolved = evaluate(warehouse, [], T0 + 2 * H, RULES)
    assert {(n.status, n.group_key, n.incident_role) for n in resolved} == {(RESOLVED, opened.group_key, UPDATES)}
    [joined] = evaluate(warehouse, [cond(FAIL, "poster")], T0 + 3 * H, RULES)  # 1 h after its last activity
    assert (joined.group_key, joined.incident_role) == (opened.group_key, JOINS)
    evaluate(warehouse, [], T0 + 4 * H, RULES)  # resolves: the incident's last activity

    [fresh] = evaluate(warehouse, [cond(FAIL, "poster")], T0 + 6 * H, RULES)  # a window later
    assert fresh.group_key != opened.group_key and fresh.incident_role == OPENS
    # split by a label: the job's failure and a shutdown are two incidents
    notes = evaluate(warehouse, [cond(FAIL, "poster"), cond("anomaly", "errors_x"), shutdown], T0 + 7 * H, RULES,
                     grouping=Grouping(by=("scope",)))
    assert sorted(n.rule for n in notes) == ["anomaly", "system_shutdown"]  # scope errors, scope system
    assert len({n.group_key for n in notes}) == 2 and {n.incident_role for n in notes} == {OPENS}
    assert query_location(warehouse, "select count(*) from alerts.incident_groups") == [(4,)]


def test_one_transaction(warehouse, monkeypatch) -> None:
    """An evaluation failing half-way leaves nothing behind."""
    import orchestration.lib.alerts.ledger as ledger_module

    evaluate(warehouse, [], T0, RULES)  # creates the tables
    real, calls = ledger_module._notification, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(ledger_module, "_notification", failing)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(warehouse, [cond(FAIL, "a"), cond(FAIL, "b")], T0, RULES)
    assert query_location(warehouse, "select count(*) from alerts.ledger") == [(0,)]
    assert query_location(warehouse, "select count(*) from alerts.transitions") == [(0,)]
    monkeypatch.undo()
    assert len(evaluate(warehouse, [cond(FAIL, "a"), cond(FAIL, "b")], T0, RULES)) == 2


# ---------------------------------------------------------------------------------------------
# built-in rules on a crafted warehouse

CRAFTED = [
    "create schema if not exists marts", "create schema if not exists intermediate", "create schema if not exists raw",
    """create table intermediate.int_job_runs (job_name text, run_at timestamptz, outcome text)""",
    """create table marts.mart_shutdown_episodes (episode_id text, shutdown_start_at timestamptz,
       shutdown_end_at timestamptz, is_ongoing boolean, duration_minutes double precision)""",
    """create table marts.fct_system_events (event_id text, event_type text, created_at timestamptz, severity text,
       is_error boolean, is_deleted boolean, component text, job_name text)""",
    """create table marts.mart_posting_health_hourly (hour_start timestamptz, hour_end timestamptz,
       n_null_tweet_id bigint, n_blocked bigint)""",
    """create table marts.mart_error_trends_hourly (hour_start timestamptz, hour_end timestamptz, dimension text,
       dimension_value text, n_errors bigint, baseline_24h double precision)""",
    """create table marts.mart_error_templates (template_id text, template text, first_seen_at timestamptz,
       n_events bigint, is_new boolean)""",
    """create table marts.mart_anomalies (series text, bucket timestamptz, observed double precision,
       expected double precision, severity text, rules text)""",
    """create table marts.mart_job_performance (job_name text, period text, period_start timestamptz,
       is_stale boolean, minutes_since_last_success double precision, stale_after_minutes double precision,
       period_end timestamptz)""",
    """create table raw._extract_state (source_table text, last_run_at timestamptz)""",
]


def ts(hours: float) -> str:
    return f"cast('{(T0 + timedelta(hours=hours)).strftime('%Y-%m-%d %H:%M:%S')}+00' as timestamptz)"


def crafted_rows() -> list[str]:
    out = []
    # poster: 4 trailing failures (skips do not break a streak); scraper: 5 failures then a success
    for i, outcome in enumerate(["success", "failure", "failure", "skipped", "failure", "failure"]):
        out.append(f"insert into intermediate.int_job_runs values ('poster', {ts(-6 + i)}, '{outcome}')")
    for i, outcome in enumerate(["failure"] * 5 + ["success"]):
        out.append(f"insert into intermediate.int_job_runs values ('scraper', {ts(-6 + i)}, '{outcome}')")
    out.append(f"insert into marts.mart_shutdown_episodes values ('e1', {ts(-30)}, {ts(-29)}, false, 60)")
    out.append(f"insert into marts.mart_shutdown_episodes values ('e2', {ts(-0.5)}, null, true, 30)")
    for i in range(12):  # 12 errors in the last hour, one critical
        sev = "critical" if i == 0 else "error"
        out.append(f"insert into marts.fct_system_events values ('ev{i}', 'error_x', {ts(-0.9 + i * 0.05)}, '{sev}',"
                   f" true, false, null, 'poster')")
    out.append(f"insert into marts.fct_system_events values ('d1', 'error_x', {ts(-0.2)}, 'critical', true, true, null, null)")
    out.append(f"insert into marts.fct_system_events values ('cb1', 'circuit_breaker_stuck', {ts(-2)}, 'critical', true,"
               " false, 'posting_executor', null)")
    out.append(f"insert into marts.fct_system_events values ('cb2', 'circuit_breaker_stuck', {ts(-3)}, 'critical', true,"
               " false, 'other_breaker', null)")
    out.append(f"insert into marts.fct_system_events values ('cb3', 'circuit_breaker_forced_reset', {ts(-1.5)}, 'info',"
               " false, false, 'other_breaker', null)")
    out.append(f"insert into marts.mart_posting_health_hourly values ({ts(-2)}, {ts(-1)}, 9, 40)")
    out.append(f"insert into marts.mart_posting_health_hourly values ({ts(-1)}, {ts(0)}, 6, 1)")
    out.append(f"insert into marts.mart_error_trends_hourly values ({ts(-1)}, {ts(0)}, 'total', 'all', 15, 8)")
    out.append(f"insert into marts.mart_error_trends_hourly values ({ts(-2)}, {ts(-1)}, 'total', 'all', 1, 8)")
    out.append(f"insert into marts.mart_error_trends_hourly values ({ts(-1)}, {ts(0)}, 'job', 'poster', 30, 1)")
    out.append(f"insert into marts.mart_error_templates values ('t_new', 'Timeout after <num> ms', {ts(-3)}, 4, true)")
    out.append(f"insert into marts.mart_error_templates values ('t_old', 'Old', {ts(-300)}, 40, false)")
    out.append(f"insert into marts.mart_anomalies values ('errors_total', {ts(-1)}, 40, 10, 'critical', 'z')")
    out.append(f"insert into marts.mart_anomalies values ('errors_total', {ts(0)}, 30, 10, 'warning', 'z')")
    out.append(f"insert into marts.mart_anomalies values ('posts', {ts(-1)}, 2, 3, 'info', 'z')")
    out.append(f"insert into marts.mart_anomalies values ('error_category:network', {ts(-1)}, 40, 10, 'critical', 'z')")
    out.append(f"insert into marts.mart_job_performance values ('poster', 'day', {ts(-12)}, false, 10, 120, {ts(0)})")
    out.append(f"insert into marts.mart_job_performance values ('scraper', 'day', {ts(-12)}, true, 900, 240, {ts(0)})")
    out.append(f"insert into marts.mart_job_performance values ('scraper', 'day', {ts(-36)}, false, 20, 240, {ts(-12)})")
    out.append(f"insert into raw._extract_state values ('system_events', {ts(-0.5)})")
    out.append(f"insert into raw._extract_state values ('job_heartbeats', {ts(-3)})")
    return out


def craft(loc: Location, skip: tuple[str, ...] = ()) -> None:
    with connect(loc) as conn:
        for stmt in CRAFTED + crafted_rows():
            if not any(s in stmt for s in skip):
                conn.execute(stmt)


def test_an_hour_in_progress_is_compared_with_a_prorated_threshold(warehouse) -> None:
    """null_tweet_ids / error_rate_increase read the hour in progress too (the fast lane builds it
    every few minutes): its count against the hourly threshold prorated to the elapsed share, never
    below half of it. Here as a "> 10 an hour" rule."""
    craft(warehouse)
    rule = replace(BUILTIN_RULES["null_tweet_ids"], condition=Threshold(">", 10))
    hour = T0 + timedelta(hours=1)  # the hour in progress; T0's hour (6 NULLs) ends before the window

    def value_at(n: int, minutes: float):
        with connect(warehouse) as conn:
            conn.execute("delete from marts.mart_posting_health_hourly where hour_start >= " + ts(1))
            conn.execute(f"insert into marts.mart_posting_health_hourly values ({ts(1)}, {ts(2)}, {n}, 0)")
        [c] = [c for c in observe(warehouse, [rule], hour + timedelta(minutes=minutes)).conditions]
        return c

    spike = value_at(40, 5)  # 40 in the first 5 minutes: pages now
    assert spike.active and spike.value == pytest.approx(80)
    assert spike.details["in_progress"] and spike.details["prorated_threshold"] == pytest.approx(5)
    assert not value_at(3, 5).active  # 3 in 5 minutes: not a rate yet (6 < 10)
    assert not value_at(7, 45).active and value_at(8, 45).active  # at 45 min: the pace, n / 0.75
    assert value_at(11, 1).active  # over the hourly threshold already: it can only grow
    # complete hours are compared as they are: 9 in the hour before (evaluated at 14:05) pages not
    late = value_at(9, 65)
    assert not late.active and late.value == 9 and "in_progress" not in late.details

    # error_rate_increase: 12 errors in the first 20 minutes vs a baseline of 8 an hour: +200 %
    with connect(warehouse) as conn:
        conn.execute(f"insert into marts.mart_error_trends_hourly values ({ts(1)}, {ts(2)}, 'total', 'all', 12, 8)")
    [c] = observe(warehouse, [BUILTIN_RULES["error_rate_increase"]], hour + timedelta(minutes=20)).conditions
    assert c.active and c.value == pytest.approx(200) and c.details["in_progress"]


def test_builtin_rules_on_a_crafted_warehouse(warehouse, tmp_path) -> None:
    craft(warehouse)
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text("""
rules:
  - name: blocked_posts
    metric: {relation: marts.mart_posting_health_hourly, value: sum(n_blocked), subject: "hour_start",
             time_column: hour_end, filter: n_blocked > 0}
    condition: "> 30"
    window: 2h
  - name: poster_errors
    sql: |
      select job_name, count(*) from marts.fct_system_events
      where is_error and created_at > :window_start and created_at <= :now group by job_name
    condition: ">= 12"
    window: 1h
  - name: broken
    sql: select * from marts.no_such_table
    condition: "> 0"
    window: 1h
""")
    rules = load_rules(rules_file)
    obs = observe(warehouse, rules, T0)
    assert set(obs.errors) == {"broken"}
    active = sorted((c.rule, c.subject) for c in obs.conditions if c.active)
    assert active == sorted([
        ("system_shutdown", "system"), ("critical_events", "system"), (FAIL, "poster"),
        ("error_rate_increase", "all"), ("errors_per_hour", "all"), ("null_tweet_ids", "posting"),
        ("circuit_breaker", "posting_executor"), ("new_error_template", "t_new"), ("anomaly", "errors_total"),
        ("stale_job", "scraper"), ("stale_source", "job_heartbeats"), ("blocked_posts", active_subject(obs, "blocked_posts")),
        ("poster_errors", "poster"),
    ])
    values = {(c.rule, c.subject): c.value for c in obs.conditions}
    assert sorted(v for (r, _s), v in values.items() if r == "blocked_posts") == [1, 40]
    assert values[(FAIL, "poster")] == 4 and values[(FAIL, "scraper")] == 0
    assert values[("error_rate_increase", "all")] == pytest.approx(87.5)
    assert values[("errors_per_hour", "all")] == 12 and values[("critical_events", "system")] == 1
    # critical_errors counts the shutdown-level critical events only: not error_x, which
    # critical_events (the digest) counts; a stuck breaker 2 h ago is one, an hour earlier
    assert values[("critical_errors", "system")] == 0
    earlier = {(c.rule, c.subject): c.value for c in observe(warehouse, rules, T0 - timedelta(hours=1.5)).conditions}
    assert earlier[("critical_errors", "system")] == 1 and earlier[("critical_events", "system")] == 1
    assert values[("null_tweet_ids", "posting")] == 6  # the last complete hour only
    assert values[("circuit_breaker", "other_breaker")] == 0
    assert values[("anomaly", "errors_total")] == 2 and ("anomaly", "posts") not in values
    assert ("anomaly", "error_category:network") not in values  # exclude_series_prefixes
    assert values[("stale_job", "scraper")] == 900 and values[("stale_job", "poster")] == 0
    assert values[("stale_source", "job_heartbeats")] == pytest.approx(180)

    # the whole path: the shutdown inhibits the per-job / posting alerts it explains
    notes, _obs = run_alerts(warehouse, rules, T0)
    assert sum(1 for n in notes if n.rule == "blocked_posts") == 1
    sent = {n.rule for n in notes}
    assert sent == {"system_shutdown", "critical_events", "new_error_template", "anomaly", "stale_source",
                    "blocked_posts", "poster_errors"}
    assert run_alerts(warehouse, rules, T0)[0] == notes  # a retried tick: the same transitions


def test_a_shutdown_between_two_evaluations_is_notified_once(warehouse) -> None:
    """An episode that began and ended between two evaluations (no evaluation saw it ongoing)
    fires once, with its end, and resolves at the next evaluation; one an evaluation saw ongoing
    is not notified again when it ends; one that ended before the window is left alone."""
    craft(warehouse)
    rule = BUILTIN_RULES["system_shutdown"]
    with connect(warehouse) as conn:
        conn.execute("delete from marts.mart_shutdown_episodes")
        conn.execute(f"insert into marts.mart_shutdown_episodes values ('e_old', {ts(-3)}, {ts(-2)}, false, 60)")
    assert run_alerts(warehouse, [rule], T0)[0] == []  # ended 2 h ago: before the 1 h window

    with connect(warehouse) as conn:  # 12:10-12:40, between the 12:00 and 13:00 evaluations
        conn.execute(f"insert into marts.mart_shutdown_episodes values ('e_short', {ts(1 / 6)}, {ts(2 / 3)}, false, 30)")
    [fired] = run_alerts(warehouse, [rule], T0 + H)[0]
    assert fired.status == FIRING and fired.numbers["duration_minutes"] == 30
    assert "The episode began at 2026-09-01T12:10" in fired.summary and "ended at 2026-09-01T12:40" in fired.summary
    assert run_alerts(warehouse, [rule], T0 + H)[0] == [fired]  # a retried tick
    [resolved] = run_alerts(warehouse, [rule], T0 + 1.1 * H)[0]
    assert resolved.status == RESOLVED
    assert run_alerts(warehouse, [rule], T0 + 1.2 * H)[0] == []

    with connect(warehouse) as conn:  # ongoing at 13:30, ended by 13:45: firing, then resolved only
        conn.execute(f"insert into marts.mart_shutdown_episodes values ('e_seen', {ts(1.4)}, null, true, 6)")
    [seen] = run_alerts(warehouse, [rule], T0 + 1.5 * H)[0]
    assert seen.status == FIRING and "The episode began" not in seen.summary and seen.numbers["duration_minutes"] == 6
    with connect(warehouse) as conn:
        conn.execute(f"update marts.mart_shutdown_episodes set is_ongoing = false, shutdown_end_at = {ts(1.6)}"
                     " where episode_id = 'e_seen'")
    assert [n.status for n in run_alerts(warehouse, [rule], T0 + 1.75 * H)[0]] == [RESOLVED]
    assert [n.status for n in run_alerts(warehouse, [rule], T0 + 1.75 * H)[0]] == [RESOLVED]  # retried
    assert run_alerts(warehouse, [rule], T0 + 2 * H)[0] == []


def active_subject(obs, rule: str) -> str:
    [c] = [c for c in obs.conditions if c.rule == rule and c.active]
    return c.subject


def test_a_missing_mart_keeps_its_alerts_firing(warehouse) -> None:
    craft(warehouse)
    rules = [r for r in RULES if r.name in ("anomaly", "stale_job")]
    notes, _ = run_alerts(warehouse, rules, T0)
    assert {n.rule for n in notes} == {"anomaly", "stale_job"}
    with connect(warehouse) as conn:
        conn.execute("drop table marts.mart_anomalies")
    notes, obs = run_alerts(warehouse, rules, T0 + H)
    assert "anomaly" in obs.errors and notes == []
    assert ledger(warehouse)["anomaly|errors_total"][0] == "firing"
    assert BUILTIN_RULES["anomaly"].name == "anomaly"


def test_digest_rules_are_not_paged_and_go_out_once_a_day(warehouse, tmp_path) -> None:
    """errors_per_hour and critical_events fire at 12:00 (delivery digest): the tick pages only
    system_shutdown; the 08:00 tick of the next day hands one digest with both, the tick after
    hands the same one (the outbox queues it once)."""
    from orchestration.lib.alerts.channels import FileChannel
    from orchestration.lib.alerts.notification import REPORT
    from orchestration.lib.alerts.tick import run_tick

    craft(warehouse)
    channel = FileChannel(tmp_path / "alerts", echo=False)
    only = {"errors_per_hour", "critical_events", "system_shutdown"}
    kw = dict(rules=load_rules(None), only=only, silences_path=tmp_path / "none.yml", deliver=False)
    noon = run_tick(warehouse, T0, [channel], **kw)
    assert {r for r, _s, _sev in noon.firing} == only
    assert [(n.rule, n.status) for n in noon.notifications] == [("system_shutdown", FIRING)]
    assert noon.enqueued == 1

    morning = run_tick(warehouse, T0 + 20 * H, [channel], **kw)  # 08:00 UTC the next day
    [digest] = [n for n in morning.notifications if n.rule == "digest"]
    assert digest.status == REPORT and digest.numbers == {"episodes": 2, "rules": 2}
    assert "errors_per_hour: 1 episodes" in digest.summary and "critical_events: 1 episodes" in digest.summary
    assert (digest.since, digest.at) == (T0 - 4 * H, T0 + 20 * H)
    assert not [n for n in morning.notifications if n.rule in ("errors_per_hour", "critical_events")]
    later = run_tick(warehouse, T0 + 21 * H, [channel], **kw)
    assert [n.transition_id for n in later.notifications if n.rule == "digest"] == [digest.transition_id]
    assert later.enqueued == len(later.notifications) - 1  # the digest is queued once
