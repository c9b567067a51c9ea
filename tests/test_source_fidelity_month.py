"""The simulated month with the bot's real writing habits, end to end (the shared fixture
``simulated_warehouses``: a first load, then the last 12 hours through an incremental run and the
full reconcile, on a PostgreSQL source into both warehouses).

- raw equals the source after the last run, and each habit the simulator recorded as truth is
  where it belongs: statuses changed without updated_at are current in raw, deleted decisions are
  marked, back-dated events are loaded, poison payloads and impossible times are quarantined
  with their reason;
- the posting-health mart equals counts computed straight from the source tables (the dating
  rules of int_decision_outcomes written as plain SQL on the source).
"""

from __future__ import annotations

import pytest
from dbquery import query_location, utc
from source_fidelity import assert_raw_equals_source, run_sql

DECISIONS = "content_generation_metadata_comprehensive"
TARGETS = ("duckdb", "postgres")
WINDOW_DAYS, MARGIN_DAYS = 60, 2  # vars posting_health_window_days, posting_outcome_event_margin_days


@pytest.mark.parametrize("kind", TARGETS)
def test_raw_equals_the_source_after_the_last_run(simulated_warehouses, kind):
    sw = simulated_warehouses
    sizes = assert_raw_equals_source(sw.source, sw.warehouses[kind])
    wh = sw.warehouses[kind]
    # every run of the last extract agreed with the source on every day
    assert all(not r.unresolved and r.reconciles[0].scope == "full" for r in sw.extracts[kind])

    stale = sw.habit("stale_updated_at")
    assert stale["count"] >= 50, "the simulator's writers leave updated_at stale"
    raw_status = dict(run_sql(wh, f"select decision_id, status from raw.{DECISIONS}"))
    src_status = dict(query_location(sw.source, f"select decision_id, status from {DECISIONS}"))
    assert all(raw_status[d] == src_status[d] for d in stale["changed_at"] if d in src_status)

    deleted = {d["decision_id"] for d in sw.habit("deleted_decisions")["decisions"]}
    assert len(deleted) >= 5
    marked = {d for (d,) in run_sql(wh, f"select decision_id from raw.{DECISIONS} where _deleted_at is not null")}
    loaded_before = {d for (d,) in run_sql(wh, "select decision_id from raw.decision_snapshots")}
    # every deletion of a decision the warehouse had seen is marked; none of them is live
    assert deleted & loaded_before <= marked and not (deleted & set(raw_status) - marked)
    assert sizes[DECISIONS].deleted_marked == len(marked)

    back_dated = [e["id"] for e in sw.habit("backdated_events")["events"]]
    assert back_dated and sw.habit("backdated_events")["days_late"] >= 1
    live = {i for (i,) in run_sql(wh, "select id from raw.system_events where _deleted_at is null")}
    assert set(back_dated) <= live

    reasons = {
        "null_created_at": "missing_created_at", "epoch_created_at": "before_floor_created_at",
        "infinity_created_at": "infinite_created_at"}
    expected = sorted((e["id"], reasons[e["reason"]]) for e in sw.habit("bad_event_times")["events"])
    got = sorted(run_sql(wh, "select row_key, reason from raw._quarantine where source_table = 'system_events' "
                             "and resolved_at is null"))
    # the month's PostgreSQL source has jsonb payloads: the poison rows were refused at the source
    assert sw.habit("poison_payloads")["stored"] == 0
    assert got == expected and len(expected) >= 3


def _source_posting_counts(sw) -> dict:
    """Posting health per hour, straight from the source tables: the mart's dating rules
    (int_decision_outcomes) as plain SQL — posted_at, else the latest causing event of the
    decision, else greatest(created_at, updated_at) (every decision's change in this month was
    observed by the warehouse after as_of or at first sight, so no observation dates one)."""
    as_of = sw.as_of.isoformat()
    sql = f"""
    with params as (
        select timestamptz '{as_of}' as as_of,
               timestamptz '{as_of}' - interval '{WINDOW_DAYS + MARGIN_DAYS} days' as events_from
    ),
    decisions as (
        select decision_id, lower(trim(status)) as status, posted_at, skip_reason,
               nullif(trim(tweet_id), '') as tweet_id, created_at, updated_at
        from {DECISIONS}
    ),
    classified as (
        select *,
            case when status = 'posted' then 'posted'
                 when status = 'archived' and posted_at is not null then 'posted'
                 when status in ('failed', 'failed_permanent') then 'failed'
                 when status in ('skipped', 'cancelled') then 'skipped'
                 when status = 'archived' and skip_reason is not null then 'skipped'
                 when status in ('blocked', 'blocked_permanent') then 'blocked'
                 when status in ('queued', 'posting', 'posting_attempt') then 'in_flight'
                 else 'other' end as outcome
        from decisions
    ),
    events as (
        select event_type, created_at,
               coalesce(coalesce(event_data, metadata) ->> 'decision_id',
                        coalesce(event_data, metadata) -> 'context' ->> 'decision_id') as decision_id
        from system_events
        where created_at >= (select events_from from params) and created_at <= (select as_of from params)
    ),
    per_rule as (
        select decision_id,
            max(case when event_type in ('POST_SUCCESS', 'REPLY_SUCCESS', 'tweet_id_recovered')
                     then created_at end) as posted_ev,
            max(case when event_type in ('POST_FAILED', 'REPLY_FAILED', 'posting_attempt_failed', 'stuck_post_reset')
                     then created_at end) as failed_ev,
            max(case when event_type = 'CREATE_TWEET_226_BLOCKED' then created_at end) as blocked_ev,
            max(case when event_type in ('CREATE_TWEET_226_BLOCKED', 'POST_FAILED', 'REPLY_FAILED',
                                         'posting_attempt_failed') then created_at end) as blocked_perm_ev,
            max(case when event_type = 'decision_cancelled' then created_at end) as skipped_ev,
            max(case when event_type in ('posting_attempt_started', 'POST_ATTEMPT') then created_at end) as in_flight_ev
        from events where decision_id is not null group by decision_id
    ),
    dated as (
        select c.*,
            case when c.outcome = 'posted' and c.posted_at is not null then c.posted_at
                 else coalesce(
                    case when c.outcome = 'posted' then r.posted_ev
                         when c.status in ('failed', 'failed_permanent') then r.failed_ev
                         when c.status = 'blocked' then r.blocked_ev
                         when c.status = 'blocked_permanent' then r.blocked_perm_ev
                         when c.outcome = 'skipped' then r.skipped_ev
                         when c.outcome = 'in_flight' then r.in_flight_ev end,
                    greatest(c.created_at, c.updated_at)) end as outcome_at
        from classified c left join per_rule r on r.decision_id = c.decision_id
    )
    select 'outcome:' || outcome, date_trunc('hour', outcome_at), count(*) from dated
        where outcome_at < (select as_of from params) group by 1, 2
    union all
    select 'n_null_tweet_id', date_trunc('hour', posted_at), count(*) from classified
        where outcome = 'posted' and tweet_id is null and posted_at < (select as_of from params) group by 1, 2
    union all
    select 'n_created', date_trunc('hour', created_at), count(*) from decisions
        where created_at < (select as_of from params) group by 1, 2
    union all
    select 'n_attempts', date_trunc('hour', created_at), count(*) from posting_attempts
        where created_at < (select as_of from params) group by 1, 2
    union all
    select 'n_attempts_succeeded', date_trunc('hour', created_at), count(*) from posting_attempts
        where created_at < (select as_of from params) and lower(trim(status)) = 'success' group by 1, 2
    """
    out: dict = {}
    for name, hour, n in query_location(sw.source, sql):
        out[(name, utc(hour))] = n
    return out


MART_COLUMNS = {
    "outcome:posted": "n_posted", "outcome:failed": "n_failed", "outcome:skipped": "n_skipped",
    "outcome:blocked": "n_blocked", "outcome:in_flight": "n_in_flight", "outcome:other": "n_other",
    "n_null_tweet_id": "n_null_tweet_id", "n_created": "n_created", "n_attempts": "n_attempts",
    "n_attempts_succeeded": "n_attempts_succeeded",
}


@pytest.mark.parametrize("kind", TARGETS)
def test_posting_health_equals_counts_straight_from_the_source(simulated_warehouses, kind):
    sw = simulated_warehouses
    expected_all = _source_posting_counts(sw)
    cols = ", ".join(MART_COLUMNS.values())
    rows = sw.query(kind, f"select hour_start, {cols} from marts.mart_posting_health_hourly")
    first_hour = min(utc(r[0]) for r in rows)
    got = {(name, utc(r[0])): r[i + 1] for r in rows for i, name in enumerate(MART_COLUMNS) if r[i + 1]}
    expected = {k: n for k, n in expected_all.items() if k[1] >= first_hour and n}
    assert got == expected
    # the month does exercise every class and both kinds of evidence
    classes = {name for name, _ in expected}
    assert {"outcome:posted", "outcome:failed", "outcome:skipped", "outcome:in_flight", "n_null_tweet_id"} <= classes
    dated_by = dict(sw.query(kind, "select outcome_dated_by, count(*) from intermediate.int_decision_outcomes "
                                   "group by 1"))
    assert dated_by.get("posted_at", 0) > 100 and dated_by.get("event", 0) > 10
