"""The posting health marts on a simulated month (issue 4 item 3, part of 5).

Uses the session fixture ``simulated_warehouses`` (tests/conftest.py): 30 simulated days (seed 5)
in a PostgreSQL source, extracted into a DuckDB and a PostgreSQL warehouse and built with
``build_marts`` (``as_of`` = the end of the data). Checks: every injected NULL-tweet-id burst is in
``mart_posting_health_hourly`` at its hour with its count (the simulator's truth) and raises the
alert; the whole hourly NULL-tweet-id series equals a count read straight from the source table;
the hourly mart is dense and the daily mart adds up to it; the blocking reason of each injected
silent shutdown shows in ``mart_posting_block_reasons`` during the shutdown; both targets give the
same rows; rates stay within 0–1.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dbquery import normalised_rows, query_location, utc

TARGETS = ("duckdb", "postgres")
HOUR = dt.timedelta(hours=1)
ALERT_PER_HOUR = 5  # var null_tweet_id_alert_per_hour

MODELS = (
    "intermediate.int_posting_health_buckets",
    "marts.mart_posting_health_hourly",
    "marts.mart_posting_health_daily",
    "marts.mart_posting_block_reasons",
    "marts.dim_error_families",
)
HOURLY_COUNTS = ("n_created", "n_posted", "n_failed", "n_skipped", "n_blocked", "n_in_flight",
                 "n_other", "n_null_tweet_id", "n_timed_posts", "n_attempts",
                 "n_attempts_succeeded", "n_timed_attempts")


def _source_null_tweet_ids_by_hour(sw) -> dict[dt.datetime, int]:
    """Posted decisions without a tweet id per UTC hour of posted_at, from the source table."""
    rows = query_location(sw.source, """
        select posted_at
        from content_generation_metadata_comprehensive
        where lower(trim(status)) = 'posted'
          and (tweet_id is null or trim(tweet_id) = '')
          and posted_at is not null
    """)
    counts: dict[dt.datetime, int] = {}
    for (posted_at,) in rows:
        at = utc(posted_at)
        if at >= sw.as_of:
            continue
        hour = at.replace(minute=0, second=0, microsecond=0)
        counts[hour] = counts.get(hour, 0) + 1
    return counts


@pytest.mark.parametrize("kind", TARGETS)
def test_null_tweet_id_burst_in_its_hour_with_its_count(simulated_warehouses, kind):
    sw = simulated_warehouses
    bursts = sw.incidents_of("null_tweet_id_burst")
    assert bursts, "the simulation injected no NULL tweet_id burst"
    source_counts = _source_null_tweet_ids_by_hour(sw)
    for burst in bursts:
        hour = utc(burst["details"]["hour"])
        expected = burst["details"]["count"]
        assert expected > ALERT_PER_HOUR
        # the truth and the source agree (the simulator keeps strays away from a burst)
        assert source_counts.get(hour, 0) == expected, burst
        rows = sw.query(kind, f"""
            select n_null_tweet_id, n_posted, null_tweet_id_rate, null_tweet_id_alert
            from marts.mart_posting_health_hourly
            where hour_start = cast('{hour.isoformat()}' as timestamptz)
        """)
        assert len(rows) == 1, (burst, rows)
        n_null, n_posted, rate, alert = rows[0]
        assert n_null == expected, (burst, rows)
        assert n_posted >= n_null
        assert rate == pytest.approx(n_null / n_posted)
        assert alert is True
        # the day of the burst carries the alert hour
        day = hour.replace(hour=0)
        (day_row,) = sw.query(kind, f"""
            select n_null_tweet_id_alert_hours, null_tweet_id_alert, n_null_tweet_id
            from marts.mart_posting_health_daily
            where day_start = cast('{day.isoformat()}' as timestamptz)
        """)
        assert day_row[0] >= 1 and day_row[1] is True and day_row[2] >= expected


@pytest.mark.parametrize("kind", TARGETS)
def test_null_tweet_id_series_and_alerts_match_the_source(simulated_warehouses, kind):
    sw = simulated_warehouses
    source_counts = _source_null_tweet_ids_by_hour(sw)
    rows = sw.query(kind, """
        select hour_start, n_null_tweet_id, null_tweet_id_alert
        from marts.mart_posting_health_hourly
    """)
    first_hour = min(utc(r[0]) for r in rows)
    expected = {h: n for h, n in source_counts.items() if h >= first_hour}
    got = {utc(h): n for h, n, _ in rows if n}
    assert got == expected
    alerts = {utc(h) for h, _, alert in rows if alert}
    assert alerts == {h for h, n in expected.items() if n > ALERT_PER_HOUR}
    assert {utc(b["details"]["hour"]) for b in sw.incidents_of("null_tweet_id_burst")} <= alerts


@pytest.mark.parametrize("kind", TARGETS)
def test_hourly_is_dense_and_daily_adds_up(simulated_warehouses, kind):
    sw = simulated_warehouses
    cols = ", ".join(HOURLY_COUNTS)
    hours = sw.query(kind, f"select hour_start, hour_end, {cols} from marts.mart_posting_health_hourly order by hour_start")
    starts = [utc(r[0]) for r in hours]
    assert len(starts) >= 24 * (sw.days - 1)
    assert starts[-1] == sw.as_of - HOUR
    assert all(b - a == HOUR for a, b in zip(starts, starts[1:])), "the hourly series has gaps"
    assert all(utc(r[1]) - utc(r[0]) == HOUR for r in hours)
    zero_hours = [r for r in hours if not any(r[2:])]
    assert all(v == 0 for r in zero_hours for v in r[2:])  # zeros, never NULLs
    days = sw.query(kind, f"select day_start, n_hours, {cols} from marts.mart_posting_health_daily")
    by_day: dict[dt.datetime, list[int]] = {}
    for r in hours:
        day = utc(r[0]).replace(hour=0)
        acc = by_day.setdefault(day, [0] * (len(HOURLY_COUNTS) + 1))
        acc[0] += 1
        for i, v in enumerate(r[2:], start=1):
            acc[i] += v
    assert {utc(d[0]): list(d[1:]) for d in days} == by_day
    # every decision outcome is counted somewhere: posted + failed + … equals the source's rows
    # whose outcome time falls in the window (n_other keeps unknown statuses)
    (total,) = sw.query(kind, """
        select sum(n_posted + n_failed + n_skipped + n_blocked + n_in_flight + n_other)
        from marts.mart_posting_health_hourly
    """)
    assert total[0] > 0


@pytest.mark.parametrize("kind", TARGETS)
def test_silent_shutdown_reason_in_block_reasons(simulated_warehouses, kind):
    sw = simulated_warehouses
    shutdowns = sw.incidents_of("silent_shutdown")
    assert shutdowns
    for incident in shutdowns:
        start, end = utc(incident["start"]), utc(incident["end"])
        rows = sw.query(kind, f"""
            select sum(n_blocks)
            from marts.mart_posting_block_reasons
            where grain = 'hour' and queue = 'posting'
              and reason = '{incident["details"]["reason"]}'
              and bucket_start >= cast('{start.replace(minute=0, second=0, microsecond=0).isoformat()}' as timestamptz)
              and bucket_start < cast('{end.isoformat()}' as timestamptz)
        """)
        assert rows[0][0] and rows[0][0] >= 1, incident
    top = sw.query(kind, """
        select count(*) from marts.mart_posting_block_reasons where reason_rank = 1
    """)
    assert top[0][0] > 0


def test_duckdb_and_postgres_identical(simulated_warehouses):
    sw = simulated_warehouses
    for model in MODELS:
        rows = {kind: normalised_rows(sw.query(kind, f"select * from {model}")) for kind in TARGETS}
        assert rows["duckdb"], model
        assert rows["duckdb"] == rows["postgres"], model


@pytest.mark.parametrize("kind", TARGETS)
def test_rates_within_bounds(simulated_warehouses, kind):
    sw = simulated_warehouses
    for model in ("marts.mart_posting_health_hourly", "marts.mart_posting_health_daily"):
        rows = sw.query(kind, f"""
            select success_rate, null_tweet_id_rate, posts_per_hour, avg_attempt_minutes,
                   p50_attempt_minutes, p95_attempt_minutes, p50_schedule_to_post_minutes,
                   p95_schedule_to_post_minutes
            from {model}
        """)
        assert rows
        for success, null_rate, per_hour, avg_att, p50_att, p95_att, p50_sched, p95_sched in rows:
            assert success is None or 0 <= success <= 1
            assert null_rate is None or 0 <= null_rate <= 1
            assert per_hour >= 0
            assert avg_att is None or avg_att >= 0
            assert p50_att is None or p50_att <= p95_att + 1e-9
            assert p50_sched is None or p50_sched <= p95_sched + 1e-9
        assert any(r[0] is not None for r in rows)
    shares = sw.query(kind, "select share_of_queue_blocks from marts.mart_posting_block_reasons")
    assert shares and all(0 < s <= 1 + 1e-9 for (s,) in shares)
    fam = sw.query(kind, "select error_family, error_category, error_share from marts.dim_error_families")
    assert all(0 <= share <= 1 for _, _, share in fam)
    assert ("null_tweet_id", "null_tweet_id") in {(f, c) for f, c, _ in fam}
