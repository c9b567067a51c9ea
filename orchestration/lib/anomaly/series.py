"""Dense hourly count series read from a source database (DuckDB file), for the anomaly scorer.

Every series is one value per hour over [start, end), zeros included, so a silent hour is a
real zero and not a missing row. Series names are ``<family>:<key>`` and each has a *kind* that
tells the scorer which tests and checklist rules apply:

    name                         kind            counted from (system_events unless said)
    errors:<x>                   errors          event_type ``error_<x>`` (ErrorTracker events),
                                                 except error_null_tweet_id (own series)
    job_failures:<job>           job_failures    ``<job>_job_execution_failed``, per job name
    job_streaks:<job>            job_failures    the same, only failures that are the 3rd or
                                                 later in a row (payload consecutive_failures
                                                 >= 3): the sign of a job failing every run
    null_tweet_id                null_tweet_id   ``error_null_tweet_id`` events (the bot logs one
                                                 per posted decision whose tweet id is NULL)
    circuit_breaker_events       events          ``circuit_breaker_*`` events
    queue_blocked:<reason>       events          POSTING_QUEUE_BLOCKED per payload ``reason``,
                                                 for the reasons that stop posting (STOP_REASONS);
                                                 pacing reasons (NO_READY_DECISIONS, RATE_LIMIT,
                                                 SAFEGUARD_*) are the queue working normally
    posting_volume               volume          POST_SUCCESS + REPLY_SUCCESS (both stop when
                                                 the bot silently stops posting)

Errors are grouped by event type (the error family), not by severity: severity is written
inconsistently by the bot (NULL, notice, high, deadlock), the event type is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ERRORS = "errors"
JOB_FAILURES = "job_failures"
NULL_TWEET_ID = "null_tweet_id"
EVENTS = "events"
VOLUME = "volume"

POSTING_VOLUME = "posting_volume"
STOP_REASONS = ("CIRCUIT_BREAKER", "POSTING_DISABLED", "GHOST_PROTECTION", "MIGRATION_HEALTH")
CIRCUIT_BREAKER_EVENTS = "circuit_breaker_events"

# One query, one row per (series, kind, hour, count); the payload is coalesce(event_data, metadata),
# NULL when it is not JSON (the bot's writers leave the odd broken one: it must not stop the read).
SERIES_SQL = """
with events as (
    select event_type, date_trunc('hour', created_at) as hour,
           case when json_valid(coalesce(event_data, metadata)) then coalesce(event_data, metadata) end as payload
    from system_events
    where created_at >= $start and created_at < $end
),
job_failures as (
    select coalesce(json_extract_string(payload, '$.job_name'),
                    regexp_replace(event_type, '_job_execution_failed$', '')) as job_name,
           hour,
           try_cast(json_extract_string(payload, '$.consecutive_failures') as integer) as consecutive_failures
    from events where event_type like '%\\_job\\_execution\\_failed' escape '\\'
)
select 'errors:' || substr(event_type, 7) as series, 'errors' as kind, hour, count(*) as n
from events
where event_type like 'error\\_%' escape '\\' and event_type <> 'error_null_tweet_id'
group by all
union all
select 'job_failures:' || job_name, 'job_failures', hour, count(*)
from job_failures
group by all
union all
select 'job_streaks:' || job_name, 'job_failures', hour, count(*)
from job_failures where consecutive_failures >= 3
group by all
union all
select 'null_tweet_id', 'null_tweet_id', hour, count(*)
from events where event_type = 'error_null_tweet_id'
group by all
union all
select 'circuit_breaker_events', 'events', hour, count(*)
from events where event_type like 'circuit\\_breaker\\_%' escape '\\'
group by all
union all
select 'queue_blocked:' || json_extract_string(payload, '$.reason'), 'events', hour, count(*)
from events where event_type = 'POSTING_QUEUE_BLOCKED'
  and json_extract_string(payload, '$.reason') in ($stop_reasons)
group by all
union all
select 'posting_volume', 'volume', hour, count(*)
from events where event_type in ('POST_SUCCESS', 'REPLY_SUCCESS')
group by all
"""


@dataclass(frozen=True)
class HourlySeries:
    name: str
    kind: str
    hours: pd.DatetimeIndex  # hour starts, UTC, consecutive
    counts: np.ndarray  # int64, one per hour


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def hourly_series_from_duckdb(path: str | Path, start: datetime, end: datetime) -> dict[str, HourlySeries]:
    """All series of the source DuckDB file at ``path``, dense over the hours of [start, end).

    Volume series always exist (an hour with no post is a zero); other series exist when the
    event occurs at least once in the period."""
    start, end = _utc(start), _utc(end)
    from orchestration.lib.db import configure_duckdb

    conn = duckdb.connect(str(path), read_only=True)
    try:
        configure_duckdb(conn, Path(path))
        conn.execute("set timezone = 'UTC'")
        sql = SERIES_SQL.replace("$stop_reasons", ", ".join(f"'{r}'" for r in STOP_REASONS))
        rows = conn.execute(sql, {"start": start, "end": end}).df()
    finally:
        conn.close()
    return densify(rows, start, end)


def densify(rows: pd.DataFrame, start: datetime, end: datetime) -> dict[str, HourlySeries]:
    """Long rows (series, kind, hour, n) into one dense series per name over [start, end)."""
    hours = pd.date_range(pd.Timestamp(start).floor("h"), pd.Timestamp(end), freq="h",
                          inclusive="left", tz="UTC")
    rows = rows.copy()
    rows["hour"] = pd.to_datetime(rows["hour"], utc=True)
    kinds = dict(zip(rows["series"], rows["kind"]))
    kinds.setdefault(POSTING_VOLUME, VOLUME)
    wide = rows.pivot_table(index="hour", columns="series", values="n", aggfunc="sum")
    wide = wide.reindex(index=hours, columns=sorted(kinds), fill_value=0).fillna(0)
    return {
        name: HourlySeries(name, kinds[name], hours, wide[name].to_numpy(dtype=np.int64))
        for name in sorted(kinds)
    }
