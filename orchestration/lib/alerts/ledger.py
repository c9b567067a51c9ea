"""The alert ledger: rule conditions in, ledger transitions and notifications out.

Two steps, both plain functions over a warehouse :class:`~orchestration.lib.settings.Location`
(DuckDB file or PostgreSQL):

1. :func:`observe` runs every rule against the warehouse (built-in rules read the marts, custom
   rules run their SQL / metric) and returns :class:`Condition` values — one per rule and subject,
   ``active`` when the rule's condition holds.
2. :func:`evaluate` folds the conditions into ``alerts.ledger`` in one transaction and returns the
   :class:`~orchestration.lib.alerts.notification.Notification` values to deliver.

Lifecycle (``alerts.ledger``, one row per alert episode; ``dedup_key = rule|subject``)::

    (no alert) --active--> firing --still active, repeat_interval since last notice--> firing (repeat)
                           firing --not active any more--> resolved (resolved notice)

Every state change is a row of ``alerts.transitions`` (``fired``, ``repeat``, ``resolved``) whose
``transition_id`` is a hash of ``(dedup_key, kind, timestamp of the change)``: the same change
always has the same id and is inserted once.

Suppression: an alert is recorded but not notified while it is *inhibited* (a firing alert of a
rule whose ``inhibits`` names its rule — for any subject or the same subject) or *silenced* (an
active silence whose matcher matches its rule / subject / labels). A suppressed alert that is
still firing when the suppression ends is notified then (a ``repeat`` transition). A resolved
notice is sent only for alerts that were notified while firing and are not suppressed now.

Idempotency (a retried tick sends nothing twice): evaluating again at the same ``now`` with the
same conditions writes nothing new. It *returns the same notifications again* — those of the
transitions recorded at ``now`` — with the same ``transition_id`` values, so a tick that crashed
between the ledger commit and delivery loses nothing on retry; delivery sends a transition id at
most once per channel (see ``notification.py``).

Incident groups (``alerts.incident_groups``, members in ``alerts.incident_group_alerts``;
configured by ``grouping:`` in the rules file, :class:`~orchestration.lib.alerts.rules.Grouping`):
a notification of a paging rule joins the open incident group with the same values of the
grouping's ``by`` labels, or opens one; its ``group_key`` is ``incident|<group id>``. A group is
open while one of its alerts still fires or its last activity is less than ``window`` ago; a
resolved notice goes to its alert's group. The group id is a hash of the ``by`` values and the
instant the group opened, so a retried evaluation finds the same group. Digest rules' (and, with
grouping disabled, every rule's) notifications share a ``group_key`` per rule and evaluation
(``rule|<group_by label values>|now``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import duckdb
import psycopg
from yaml.nodes import MappingNode, SequenceNode

from orchestration.lib.alerts.channels import notification_from_dict, notification_to_dict
from orchestration.lib.alerts.notification import FIRING, JOINS, OPENS, RESOLVED, UPDATES, Notification
from orchestration.lib.alerts.rules import (DEFAULT_GROUPING, Grouping, RulesFileError, RuleSpec, _compose, _mapping,
                                            _scalar, _value, sql_query_problem)
from orchestration.lib.db import connect, duckdb_connect, postgres_connect
from orchestration.lib.settings import Location

SCHEMA = "alerts"
LEDGER = f"{SCHEMA}.ledger"
TRANSITIONS = f"{SCHEMA}.transitions"
SILENCES = f"{SCHEMA}.silences"
INCIDENT_GROUPS = f"{SCHEMA}.incident_groups"
INCIDENT_MEMBERS = f"{SCHEMA}.incident_group_alerts"

DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {LEDGER} (
        alert_id text not null,
        rule text not null,
        subject text not null,
        dedup_key text not null,
        status text not null,
        severity text not null,
        first_fired_at timestamptz not null,
        last_evaluated_at timestamptz not null,
        last_notified_at timestamptz,
        resolved_at timestamptz,
        value double precision,
        details text,
        suppressed_by text)""",
    f"""create table if not exists {TRANSITIONS} (
        transition_id text not null unique,
        alert_id text not null,
        kind text not null,
        transition_at timestamptz not null,
        notified boolean not null,
        suppressed_by text,
        notification text)""",
    f"""create table if not exists {SILENCES} (
        silence_id text not null unique,
        matcher text not null,
        starts_at timestamptz not null,
        ends_at timestamptz not null,
        created_by text,
        comment text,
        created_at timestamptz not null)""",
    f"""create table if not exists {INCIDENT_GROUPS} (
        group_id text not null unique,
        group_key text not null,
        group_labels text not null,
        opened_at timestamptz not null,
        last_active_at timestamptz not null)""",
    f"""create table if not exists {INCIDENT_MEMBERS} (
        group_id text not null,
        alert_id text not null,
        rule text not null,
        joined_at timestamptz not null)""",
]

FIRED, REPEAT, RESOLVE = "fired", "repeat", "resolved"
_LEDGER_COLS = ("alert_id", "rule", "subject", "dedup_key", "status", "severity", "first_fired_at",
                "last_evaluated_at", "last_notified_at", "resolved_at", "value", "details", "suppressed_by")


@dataclass(frozen=True)
class Condition:
    """One rule's verdict for one subject at one evaluation."""

    rule: str
    subject: str
    value: float | None
    active: bool
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.rule, self.subject)


@dataclass(frozen=True)
class Silence:
    """Suppresses notifications of alerts its matcher matches, from ``starts_at`` until ``ends_at``.

    ``matcher`` maps ``rule``, ``subject`` or a label name to a value or a glob (``stale_*``);
    every entry must match."""

    matcher: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str | None = None
    comment: str | None = None
    silence_id: str = ""

    def __post_init__(self) -> None:
        if not self.silence_id:
            object.__setattr__(self, "silence_id", "sil_" + _hash(json.dumps(self.matcher, sort_keys=True),
                                                                   _iso(self.starts_at), _iso(self.ends_at),
                                                                   self.created_by or ""))

    def active_at(self, at: datetime) -> bool:
        return _utc(self.starts_at) <= at < _utc(self.ends_at)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(key in labels and fnmatch.fnmatchcase(str(labels[key]), str(pattern))
                   for key, pattern in self.matcher.items())


@dataclass
class Observation:
    """What :func:`observe` saw: the conditions, the rules it could evaluate, and per-rule errors
    (a rule that failed is left out of ``evaluated`` so that its firing alerts are not resolved)."""

    conditions: list[Condition]
    evaluated: list[RuleSpec]
    errors: dict[str, str] = field(default_factory=dict)


def dedup_key(rule: str, subject: str) -> str:
    return f"{rule}|{subject}"


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso(value: datetime | None) -> str:
    return _utc(value).isoformat() if value is not None else ""


def transition_id(key: str, kind: str, at: datetime) -> str:
    """Deterministic: the same state change always gets the same id."""
    return "tr_" + _hash(key, kind, _iso(at))


def alert_id(key: str, first_fired_at: datetime) -> str:
    return "al_" + _hash(key, _iso(first_fired_at))


# ---------------------------------------------------------------------------------------------
# connections


class _Conn:
    """``?`` placeholders on both engines."""

    def __init__(self, conn, location: Location) -> None:
        self.conn = conn
        self.pg = location.is_postgres

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        params = list(params)
        if self.pg:
            sql = sql.replace("?", "%s")
        cur = self.conn.execute(sql, params) if params else self.conn.execute(sql)
        try:
            return cur.fetchall()
        except Exception:  # statements without a result set
            return []


def _ensure_ddl(c: _Conn) -> None:
    """The alerts tables if missing. ``create schema`` only when the schema is missing: on
    PostgreSQL it needs CREATE on the database even when the schema exists, which the
    ``ops_alert_evaluator`` role (CREATE in ``alerts`` only) does not have."""
    exists = c.execute("select 1 from pg_namespace where nspname = ?" if c.pg else
                       "select 1 from information_schema.schemata where schema_name = ?", [SCHEMA])
    for stmt in DDL:
        if not (exists and stmt.startswith("create schema")):
            c.execute(stmt)


def ensure_schema(location: Location) -> None:
    with connect(location) as conn:
        _ensure_ddl(_Conn(conn, location))


# ---------------------------------------------------------------------------------------------
# observing: built-in rules read the marts


@dataclass(frozen=True)
class _Obs:
    subject: str
    value: float | None
    details: dict[str, Any] = field(default_factory=dict)
    eligible: bool = True  # False: reported but never active (e.g. below a minimum volume)


def _in_list(values: Iterable[str]) -> tuple[str, list[str]]:
    values = list(values)
    return ", ".join("?" for _ in values) or "null", values


def _shutdown(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    """Active while an episode is ongoing; and once (``once``: see :func:`evaluate`) for an episode
    that began and ended between two evaluations, which no evaluation saw ongoing: the latest that
    ended in the window. The evaluation after it resolves the alert, so the operator gets a firing
    and a resolved notification for it."""
    rows = c.execute(
        """select episode_id, shutdown_start_at, duration_minutes, is_ongoing, shutdown_end_at
           from marts.mart_shutdown_episodes
           where shutdown_start_at <= ? and (is_ongoing or shutdown_end_at > ?)
           order by shutdown_start_at desc""", [now, start])
    if not rows:
        return [_Obs("system", 0)]
    episode, started, minutes, ongoing, ended_at = rows[0]
    details = {"occurrence": episode, "shutdown_start_at": _iso(_utc(started)), "duration_minutes": minutes}
    if ongoing or _utc(ended_at) > now:
        return [_Obs("system", 1, details)]
    return [_Obs("system", 1, {**details, "once": True, "shutdown_end_at": _iso(_utc(ended_at)),
                               "message": f"The episode began at {_iso(_utc(started))} and ended at "
                                          f"{_iso(_utc(ended_at))}, before this evaluation."})]


def _critical(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    """Critical events in the window; only those of ``params.event_types`` when it is set
    (critical_errors: the shutdown-level ones)."""
    types = rule.params.get("event_types")
    marks, values = _in_list(str(t) for t in types or ())
    only = f"and event_type in ({marks})" if types else ""
    rows = c.execute(
        f"""select count(*), count(distinct event_type) from marts.fct_system_events
            where severity = 'critical' and not coalesce(is_deleted, false) {only}
              and created_at > ? and created_at <= ?""", [*values, start, now])
    n, types = rows[0]
    return [_Obs("system", n, {"n_event_types": types})]


def _consecutive_failures(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    rows = c.execute(
        """select job_name, outcome, run_at from intermediate.int_job_runs
           where run_at > ? and run_at <= ? order by job_name, run_at desc""", [start, now])
    streaks: dict[str, list] = {}
    for job, outcome, run_at in rows:
        s = streaks.setdefault(job, [0, False, None])  # streak, broken, last failure
        if s[1]:
            continue
        if outcome == "success":
            s[1] = True
        elif outcome == "failure":
            s[0] += 1
            s[2] = s[2] or run_at
    return [_Obs(job, n, {"last_failure_at": _iso(_utc(last)) if last else None})
            for job, (n, _b, last) in sorted(streaks.items())]


# A rule reading hour buckets also reads the hour in progress (the fast lane builds it every few
# minutes): its count is projected to the whole hour, n / max(elapsed share, min share), and the
# projection is compared with the rule's hourly threshold; equivalently the count is compared with
# the threshold prorated to the elapsed share, never below params.partial_min_share (default 0.5)
# of it. So at 10:05 (share 1/12) a "> 10 an hour" rule pages on 40 events (projected 80) and not
# on 3 (projected 6: 3 events in 5 minutes are not yet a rate); from half past on the projection
# is the plain pace, n / share. A count can only grow, so a count already over the hourly
# threshold always fires. Buckets that are complete are compared as they are.
PARTIAL_MIN_SHARE = 0.5


def prorate(n: float, bucket_start: datetime, bucket_end: datetime, now: datetime,
            min_share: float = PARTIAL_MIN_SHARE) -> tuple[float, float | None]:
    """(value, share): a bucket's count as compared with an hourly threshold, and the elapsed
    share of a bucket in progress (None when it is complete)."""
    bucket_start, bucket_end = _utc(bucket_start), _utc(bucket_end)
    if bucket_end <= now:
        return float(n), None
    share = max(0.0, (now - bucket_start) / (bucket_end - bucket_start))
    return float(n) / max(share, min_share, 1e-9), share


def _bucket_details(hour: Any, n: float, share: float | None, rule: RuleSpec, min_share: float) -> dict[str, Any]:
    details: dict[str, Any] = {"hour_start": _iso(_utc(hour))}
    if share is not None:
        details.update(in_progress=True, elapsed_minutes=round(share * 60, 1), count_so_far=n,
                       prorated_threshold=round(rule.condition.threshold * max(share, min_share), 3))
    return details


def _min_share(rule: RuleSpec) -> float:
    return float(rule.params.get("partial_min_share", PARTIAL_MIN_SHARE))


def _error_rate(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    """The last complete hour, or the hour in progress (prorated, see ``prorate``) when it is
    the higher; vs the mean of the 24 hours before."""
    dimension = str(rule.params.get("dimension", "total"))
    min_errors = float(rule.params.get("min_errors", 0))
    min_share = _min_share(rule)
    rows = c.execute(
        """select dimension_value, hour_start, hour_end, n_errors, baseline_24h from marts.mart_error_trends_hourly
           where dimension = ? and hour_end > ? and hour_start < ? order by dimension_value, hour_start desc""",
        [dimension, start, now])
    best: dict[str, tuple] = {}
    for subject, hour, hour_end, n, baseline in rows:
        n = float(n or 0)
        projected, share = prorate(n, hour, hour_end, now, min_share)
        pct = None if not baseline else (projected - float(baseline)) / float(baseline) * 100.0
        previous = best.get(subject)
        if previous is None or (pct is not None and (previous[0] is None or pct > previous[0])):
            best[subject] = (pct, hour, n, baseline, share)
    out = []
    for subject, (pct, hour, n, baseline, share) in best.items():
        details = {"n_errors": n, "baseline_24h": None if baseline is None else float(baseline),
                   **_bucket_details(hour, n, share, rule, min_share)}
        details.pop("prorated_threshold", None)  # the threshold is a percentage, not a count
        out.append(_Obs(str(subject), pct, details, eligible=pct is not None and n >= min_errors))
    return out


def _errors_per_hour(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    rows = c.execute(
        """select count(*) from marts.fct_system_events
           where is_error and not coalesce(is_deleted, false) and created_at > ? and created_at <= ?""",
        [start, now])
    return [_Obs("all", rows[0][0])]


def _null_tweet_ids(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    """The worst hour of the window: the last complete hour, or the hour in progress with its
    count prorated (``prorate``: the fast lane builds it every few minutes)."""
    min_share = _min_share(rule)
    rows = c.execute(
        """select hour_start, hour_end, n_null_tweet_id from marts.mart_posting_health_hourly
           where hour_end > ? and hour_start < ? order by hour_start desc""",
        [start, now])
    if not rows:
        return [_Obs("posting", 0)]
    scored = [(*prorate(float(n or 0), hour, hour_end, now, min_share), hour, float(n or 0))
              for hour, hour_end, n in rows]
    value, share, hour, n = max(scored, key=lambda r: r[0])
    return [_Obs("posting", value, _bucket_details(hour, n, share, rule, min_share))]


def _circuit_breaker(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    opens = [str(t) for t in rule.params.get("open_event_types", [])]
    closes = [str(t) for t in rule.params.get("close_event_types", [])]
    marks, values = _in_list([*opens, *closes])
    rows = c.execute(
        f"""select coalesce(component, 'circuit_breaker'), event_type, created_at from marts.fct_system_events
            where event_type in ({marks}) and not coalesce(is_deleted, false)
              and created_at > ? and created_at <= ? order by created_at, event_id""",
        [*values, start, now])
    last: dict[str, tuple[str, Any]] = {}
    for subject, event_type, at in rows:
        last[str(subject)] = (event_type, at)
    return [_Obs(subject, 1 if event_type in opens else 0,
                 {"last_event_type": event_type, "last_event_at": _iso(_utc(at))})
            for subject, (event_type, at) in sorted(last.items())]


def _new_template(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    rows = c.execute(
        """select template_id, template, n_events, first_seen_at from marts.mart_error_templates
           where is_new and (first_seen_at is null or (first_seen_at > ? and first_seen_at <= ?))
           order by template_id""", [start, now])
    return [_Obs(str(tid), 1, {"template": template, "n_events": n, "first_seen_at": _iso(_utc(first))})
            for tid, template, n, first in rows]


def _anomaly(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    marks, sevs = _in_list(str(s) for s in rule.params.get("severities", ["warning", "critical"]))
    excluded = [str(p) for p in rule.params.get("exclude_series_prefixes") or ()]
    rows = c.execute(
        f"""select series, bucket, observed, expected, severity, rules from marts.mart_anomalies
            where bucket > ? and bucket <= ? and severity in ({marks}) order by series, bucket desc""",
        [start, now, *sevs])
    rows = [r for r in rows if not any(str(r[0]).startswith(p) for p in excluded)]
    out: dict[str, _Obs] = {}
    for series, bucket, observed, expected, severity, rules in rows:
        if series in out:
            prev = out[series]
            out[series] = _Obs(series, (prev.value or 0) + 1, prev.details)
            continue
        out[series] = _Obs(str(series), 1, {"bucket": _iso(_utc(bucket)), "observed": observed,
                                            "expected": expected, "anomaly_severity": severity,
                                            "rules": rules})
    return list(out.values())


def _stale_job(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    # the day row's is_stale / minutes_since_last_success are as of its period_end (the build's
    # as_of, for the latest day). A row built after ``now`` (evaluating the past: a backfill, a
    # replay) would report the end of its day at every hour of it, so for those rows the
    # staleness is recomputed at ``now`` from the last success in int_job_runs up to ``now``.
    rows = c.execute(
        """select job_name, period_start, is_stale, minutes_since_last_success, stale_after_minutes, period_end
           from marts.mart_job_performance
           where period = 'day' and period_start <= ? and period_start > ?
           order by job_name, period_start desc""", [now, start - timedelta(days=1)])
    last_success: dict[str, datetime] | None = None
    out, seen = [], set()
    for job, period_start, stale, minutes, stale_after, period_end in rows:
        if job in seen:
            continue
        seen.add(job)
        details: dict[str, Any] = {"stale_after_minutes": stale_after, "period_start": _iso(_utc(period_start))}
        if period_end is not None and _utc(period_end) > now and stale_after is not None:
            if last_success is None:
                last_success = {str(j): _utc(at) for j, at in c.execute(
                    """select job_name, max(run_at) from intermediate.int_job_runs
                       where outcome = 'success' and run_at <= ? group by job_name""", [now])}
            at = last_success.get(str(job))
            minutes = None if at is None else (now - at).total_seconds() / 60
            stale = minutes is None or minutes > float(stale_after)
            details["as_of"] = _iso(now)
        value = (float(minutes) if minutes is not None else rule.window.total_seconds() / 60) if stale else 0
        out.append(_Obs(str(job), value, {"minutes_since_last_success": minutes, **details}))
    return out


def _stale_source(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    rows = c.execute("select source_table, last_run_at from raw._extract_state order by source_table")
    out = []
    for table, last_run in rows:
        minutes = None if last_run is None else (now - _utc(last_run)).total_seconds() / 60
        out.append(_Obs(str(table), minutes, {"last_run_at": _iso(_utc(last_run)) if last_run else None}))
    return out


BUILTIN_EVALUATORS: dict[str, tuple[tuple[str, ...], Callable[..., list[_Obs]]]] = {
    # rule name -> (relations it reads, evaluator)
    "system_shutdown": (("marts.mart_shutdown_episodes",), _shutdown),
    "critical_errors": (("marts.fct_system_events",), _critical),
    "critical_events": (("marts.fct_system_events",), _critical),
    "consecutive_job_failures": (("intermediate.int_job_runs",), _consecutive_failures),
    "error_rate_increase": (("marts.mart_error_trends_hourly",), _error_rate),
    "errors_per_hour": (("marts.fct_system_events",), _errors_per_hour),
    "null_tweet_ids": (("marts.mart_posting_health_hourly",), _null_tweet_ids),
    "circuit_breaker": (("marts.fct_system_events",), _circuit_breaker),
    "new_error_template": (("marts.mart_error_templates",), _new_template),
    "anomaly": (("marts.mart_anomalies",), _anomaly),
    "stale_job": (("marts.mart_job_performance",), _stale_job),
    "stale_source": (("raw._extract_state",), _stale_source),
}


def _ts_literal(at: datetime) -> str:
    return f"cast('{_utc(at).strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00' as timestamptz)"


def render_sql(rule: RuleSpec, now: datetime) -> str:
    """The query of a custom rule, with ``:window_start`` and ``:now`` as timestamp literals."""
    start = now - rule.window
    if rule.kind == "metric":
        m = rule.metric or {}
        extra = f" and ({m['filter']})" if m.get("filter") else ""
        sql = (f"select cast({m['subject']} as text) as subject, {m['value']} as value from {m['relation']} "
               f"where {m['time_column']} > :window_start and {m['time_column']} <= :now{extra} group by 1")
    else:
        sql = rule.sql or ""
    return sql.replace(":window_start", _ts_literal(start)).replace(":now", _ts_literal(now))


# ---------------------------------------------------------------------------------------------
# custom SQL: one read-only query, rolled back, under a timeout

SQL_TIMEOUT_ENV = "OPS_ALERT_SQL_TIMEOUT_SECONDS"
EVALUATOR_URL_ENV = "OPS_ALERT_EVALUATOR_URL"
# DuckDB plan operators (EXPLAIN (format json) "name") that write: DuckDB runs a data-modifying
# CTE inside a SELECT statement (``with d as (delete … returning 1) select …``)
_DUCKDB_WRITE_OPERATORS = ("INSERT", "DELETE", "UPDATE", "MERGE", "CREATE", "DROP", "ALTER", "COPY", "ATTACH",
                           "DETACH", "VACUUM", "EXPORT", "LOAD", "PRAGMA", "SET", "TRANSACTION", "CHECKPOINT")


class CustomSqlError(RuntimeError):
    """A custom rule's query was refused (not one read-only query), timed out or failed; the
    message names the rule."""


def alert_sql_timeout_seconds() -> float:
    """How long one custom rule's query may run (``$OPS_ALERT_SQL_TIMEOUT_SECONDS``, default 30)."""
    value = os.environ.get(SQL_TIMEOUT_ENV) or "30"
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{SQL_TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"{SQL_TIMEOUT_ENV} must be > 0, got {value!r}")
    return seconds


def evaluator_location() -> Location | None:
    """``$OPS_ALERT_EVALUATOR_URL``: a PostgreSQL DSN (the ``ops_alert_evaluator`` role) custom rules
    run as, instead of the warehouse connection; None when unset."""
    value = (os.environ.get(EVALUATOR_URL_ENV) or "").strip()
    if not value:
        return None
    location = Location.parse(value)
    if not location.is_postgres:
        raise ValueError(f"{EVALUATOR_URL_ENV} must be a postgresql:// DSN")
    return location


def require_warehouse(location: Location) -> None:
    """A DuckDB warehouse file must exist before anything reads it (opening one creates it)."""
    if not location.is_postgres and location.path is not None and not location.path.is_file():
        raise FileNotFoundError(f"DuckDB warehouse {location.path} does not exist "
                                f"(set OPS_WAREHOUSE_URL, or run the pipeline first)")


def _plan_writes(pg: bool, plan: Any) -> list[str]:
    """The writing operators of an EXPLAIN (format json) plan of either engine."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if pg:
                if node.get("Node Type") == "ModifyTable":
                    found.append(str(node.get("Operation") or "ModifyTable").upper())
            elif str(node.get("name", "")).upper().startswith(_DUCKDB_WRITE_OPERATORS):
                found.append(str(node["name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


def run_read_only(c: _Conn, sql: str, name: str, timeout: float | None = None,
                  explain: bool = False) -> list[tuple]:
    """Run ``sql`` (a custom rule's rendered query) read-only: exactly one SELECT statement, in a
    transaction that is rolled back after reading, stopped after ``timeout`` seconds (default
    ``$OPS_ALERT_SQL_TIMEOUT_SECONDS``). ``explain``: only plan it (EXPLAIN), which checks the
    relations, columns and functions it names without running it. Raises :class:`CustomSqlError`
    naming the rule ``name``.

    PostgreSQL: ``begin read only``, ``set local statement_timeout``, the query sent with the
    extended protocol (the server refuses several statements), ``rollback``. DuckDB: the parser
    must find one SELECT statement whose plan writes nothing; it runs in a transaction that is
    rolled back, and a timer interrupts it."""
    timeout = alert_sql_timeout_seconds() if timeout is None else timeout
    problem = sql_query_problem(sql)
    if problem:
        raise CustomSqlError(f"rule '{name}' refused: {problem}")
    if c.pg:
        return _pg_read_only(c, sql, name, timeout, explain)
    return _duckdb_read_only(c, sql, name, timeout, explain)


def _pg_read_only(c: _Conn, sql: str, name: str, timeout: float, explain: bool) -> list[tuple]:
    conn = c.conn
    if not conn.autocommit:
        conn.rollback()
    conn.execute("begin read only")
    try:
        conn.execute("select set_config('statement_timeout', %s, true)", [f"{max(1, int(timeout * 1000))}ms"])
        if explain:
            plan = conn.execute(f"explain (format json) {sql}", prepare=True).fetchone()[0]
            writes = _plan_writes(True, json.loads(plan) if isinstance(plan, str) else plan)
            if writes:
                raise CustomSqlError(f"rule '{name}' refused: the query writes ({', '.join(writes)}); "
                                     f"custom SQL rules are read-only")
            return []
        cur = conn.execute(sql, prepare=True)  # extended protocol: one statement only
        return cur.fetchall() if cur.description else []
    except psycopg.errors.QueryCanceled:
        raise CustomSqlError(f"rule '{name}' timed out after {timeout:g} s ({SQL_TIMEOUT_ENV})") from None
    except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege) as exc:
        raise CustomSqlError(f"rule '{name}' refused: {str(exc).splitlines()[0]} "
                             f"(custom SQL rules are read-only)") from None
    except psycopg.Error as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "multiple commands" in message:
            raise CustomSqlError(f"rule '{name}' refused: several statements; a rule runs exactly one query") from None
        raise CustomSqlError(f"rule '{name}': {type(exc).__name__}: {message}") from None
    finally:
        try:
            conn.execute("rollback")
        except psycopg.Error:
            pass


def _duckdb_read_only(c: _Conn, sql: str, name: str, timeout: float, explain: bool) -> list[tuple]:
    conn = c.conn
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise CustomSqlError(f"rule '{name}': {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise CustomSqlError(f"rule '{name}' refused: {len(statements)} statements; a rule runs exactly one query")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise CustomSqlError(f"rule '{name}' refused: a {statements[0].type.name} statement; "
                             f"custom SQL rules are read-only queries")
    conn.execute("begin transaction")
    try:
        plan = json.loads(conn.execute(f"explain (format json) {sql}").fetchall()[0][1])
        writes = _plan_writes(False, plan)
        if writes:
            raise CustomSqlError(f"rule '{name}' refused: the query writes ({', '.join(sorted(set(writes)))}); "
                                 f"custom SQL rules are read-only")
        if explain:
            return []
        lock, state = threading.Lock(), {"running": True, "fired": False}

        def stop() -> None:
            with lock:
                if state["running"]:
                    state["fired"] = True
                    conn.interrupt()

        timer = threading.Timer(timeout, stop)
        timer.daemon = True
        timer.start()
        try:
            rows = conn.execute(sql).fetchall()
        except duckdb.Error as exc:
            if state["fired"] or isinstance(exc, duckdb.InterruptException):
                raise CustomSqlError(f"rule '{name}' timed out after {timeout:g} s ({SQL_TIMEOUT_ENV})") from None
            raise
        finally:
            with lock:
                state["running"] = False
            timer.cancel()
        return rows
    except duckdb.Error as exc:
        raise CustomSqlError(f"rule '{name}': {str(exc).splitlines()[0]}") from None
    finally:
        try:
            conn.execute("rollback")
        except duckdb.Error:
            pass


def explain_custom_rules(location: Location, rules: Iterable[RuleSpec], now: datetime,
                         timeout: float | None = None) -> dict[str, str]:
    """Plan (EXPLAIN) every custom rule's rendered query against the warehouse, read-only: a
    misspelled relation, column or function, or a query that writes, is an error at check time.
    Returns ``{rule name: error}`` (empty: every query plans)."""
    now = _utc(now)
    custom = [r for r in rules if r.kind in ("sql", "metric")]
    if not custom:
        return {}
    require_warehouse(location)
    target = evaluator_location() if location.is_postgres else None
    target = target or location
    raw = (postgres_connect(target, autocommit=True) if target.is_postgres
           else duckdb_connect(target, read_only=True))
    c = _Conn(raw, target)
    errors: dict[str, str] = {}
    try:
        for rule in custom:
            try:
                run_read_only(c, render_sql(rule, now), rule.name, timeout, explain=True)
            except CustomSqlError as exc:
                errors[rule.name] = str(exc)
    finally:
        raw.close()
    return errors


def _custom(c: _Conn, rule: RuleSpec, now: datetime, start: datetime) -> list[_Obs]:
    out = []
    for row in run_read_only(c, render_sql(rule, now), rule.name):
        if len(row) < 2:
            raise ValueError(f"rule {rule.name}: the query must return (subject, value) columns")
        subject, value = row[0], row[1]
        out.append(_Obs(str(subject), None if value is None else float(value)))
    return out


def _relation_exists(c: _Conn, relation: str) -> bool:
    schema, _, name = relation.partition(".")
    return bool(c.execute("select 1 from information_schema.tables where table_schema = ? and table_name = ?",
                          [schema, name]))


def observe(location: Location, rules: list[RuleSpec], now: datetime) -> Observation:
    """Every rule's conditions at ``now``. A built-in rule whose mart is missing, or a rule whose
    query fails, is reported in ``errors`` and left out of ``evaluated``."""
    now = _utc(now)
    raw = postgres_connect(location, autocommit=True) if location.is_postgres else duckdb_connect(location)
    c = _Conn(raw, location)
    evaluator: _Conn | None = None  # custom rules' connection as $OPS_ALERT_EVALUATOR_URL, if set
    conditions: list[Condition] = []
    evaluated: list[RuleSpec] = []
    errors: dict[str, str] = {}
    try:
        for rule in rules:
            start = now - rule.window
            try:
                if rule.kind == "builtin":
                    if rule.name not in BUILTIN_EVALUATORS:
                        raise ValueError(f"no evaluator for built-in rule {rule.name}")
                    relations, fn = BUILTIN_EVALUATORS[rule.name]
                    missing = [r for r in relations if not _relation_exists(c, r)]
                    if missing:
                        raise LookupError(f"missing relation(s): {', '.join(missing)}")
                    observations = fn(c, rule, now, start)
                else:
                    if evaluator is None:
                        target = evaluator_location() if location.is_postgres else None
                        evaluator = c if target is None else _Conn(postgres_connect(target, autocommit=True), target)
                    observations = _custom(evaluator, rule, now, start)
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the others
                errors[rule.name] = f"{type(exc).__name__}: {exc}"
                continue
            evaluated.append(rule)
            for o in observations:
                value = None if o.value is None else float(o.value)
                conditions.append(Condition(rule.name, o.subject, value,
                                            o.eligible and rule.condition.holds(value), o.details))
    finally:
        raw.close()
        if evaluator is not None and evaluator is not c:
            evaluator.conn.close()
    return Observation(conditions, evaluated, errors)


# ---------------------------------------------------------------------------------------------
# the ledger


@dataclass
class _Alert:
    alert_id: str
    rule: str
    subject: str
    dedup_key: str
    status: str
    severity: str
    first_fired_at: datetime
    last_evaluated_at: datetime
    last_notified_at: datetime | None
    resolved_at: datetime | None
    value: float | None
    details: str | None
    suppressed_by: str | None
    is_new: bool = False
    changed: bool = False


def _labels(rule: RuleSpec, subject: str) -> dict[str, str]:
    labels = {**rule.labels, "rule": rule.name, "subject": subject, "severity": rule.severity}
    if rule.routing:
        labels["channels"] = ",".join(rule.routing)
    return labels


def _group_key(rule: RuleSpec, labels: dict[str, str], now: datetime) -> str:
    parts = [rule.name, *(f"{k}={labels.get(k, '')}" for k in rule.group_by), _iso(now)]
    return "|".join(parts)


@dataclass
class IncidentGroup:
    """One row of ``alerts.incident_groups``: the paging notifications of one incident."""

    group_id: str
    group_labels: str  # JSON of the grouping's ``by`` label values
    opened_at: datetime
    last_active_at: datetime
    is_new: bool = False

    @property
    def group_key(self) -> str:
        return f"incident|{self.group_id}"


def incident_group_id(group_labels: str, opened_at: datetime) -> str:
    """Deterministic: a retried evaluation opening the same group gets the same id."""
    return "inc_" + _hash("incident", group_labels, _iso(opened_at))[:12]


def _group_labels(grouping: Grouping, labels: dict[str, str]) -> str:
    return json.dumps({k: labels.get(k, "") for k in grouping.by}, sort_keys=True)


def _is_open(group: IncidentGroup, grouping: Grouping, now: datetime) -> bool:
    return group.opened_at <= now and now - group.last_active_at < grouping.window


def _load_incident_groups(c: _Conn, grouping: Grouping, now: datetime,
                          alert_ids: list[str]) -> tuple[dict[str, IncidentGroup], dict[str, IncidentGroup],
                                                         set[tuple[str, str]]]:
    """(open groups by their ``by`` values, the group of each of ``alert_ids`` that has one,
    the (group id, alert id) memberships of those)."""
    cols = "g.group_id, g.group_labels, g.opened_at, g.last_active_at"
    rows = c.execute(f"select {cols} from {INCIDENT_GROUPS} g where g.last_active_at > ? and g.opened_at <= ? "
                     f"order by g.opened_at", [now - grouping.window, now])
    groups = {gid: IncidentGroup(gid, lab, _utc(o), _utc(la)) for gid, lab, o, la in rows}
    of_alert: dict[str, IncidentGroup] = {}
    members: set[tuple[str, str]] = set()
    for start in range(0, len(alert_ids), 500):
        chunk = alert_ids[start:start + 500]
        marks, values = _in_list(chunk)
        for aid, gid, lab, o, la in c.execute(
                f"""select m.alert_id, {cols} from {INCIDENT_MEMBERS} m join {INCIDENT_GROUPS} g
                    on g.group_id = m.group_id where m.alert_id in ({marks}) order by m.joined_at""", values):
            group = groups.setdefault(gid, IncidentGroup(gid, lab, _utc(o), _utc(la)))
            of_alert[aid] = group  # the latest group it joined
            members.add((gid, aid))
    open_by_labels = {g.group_labels: g for g in sorted(groups.values(), key=lambda g: g.opened_at)
                      if _is_open(g, grouping, now)}
    return open_by_labels, of_alert, members


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if math.isfinite(value) else str(value)


def _notification(tid: str, kind: str, rule: RuleSpec, alert: _Alert, now: datetime,
                  incident: tuple[IncidentGroup, str] | None = None) -> Notification:
    """``incident``: the alert's incident group and the notification's part in it (OPENS, JOINS,
    UPDATES); None for notifications outside incident groups (per rule and evaluation)."""
    labels = _labels(rule, alert.subject)
    details = json.loads(alert.details) if alert.details else {}
    numbers: dict[str, Any] = {"value": alert.value, "threshold": rule.condition.threshold}
    numbers.update({k: v for k, v in details.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if kind == RESOLVE:
        minutes = (now - alert.first_fired_at).total_seconds() / 60
        status, title = RESOLVED, f"[RESOLVED] {rule.name}: {alert.subject}"
        summary = f"{rule.name} for {alert.subject} resolved after {minutes:.0f} min."
    else:
        status = FIRING
        title = f"[FIRING] {rule.name}: {alert.subject}"
        summary = (f"{rule.description} Value {_fmt(alert.value)} {rule.condition.op} "
                   f"{_fmt(rule.condition.threshold)}" + (" (still firing)." if kind == REPEAT else "."))
        if isinstance(details.get("message"), str):  # what the evaluator adds about this subject
            summary += " " + details["message"]
    return Notification(transition_id=tid, rule=rule.name, subject=alert.subject, severity=rule.severity,
                        status=status, title=title, summary=summary.strip(), since=alert.first_fired_at,
                        at=now, numbers=numbers, labels=labels,
                        group_key=incident[0].group_key if incident else _group_key(rule, labels, now),
                        incident=incident[0].group_id if incident else None,
                        incident_role=incident[1] if incident else None)


def _to_json(n: Notification) -> str:
    return json.dumps(notification_to_dict(n), sort_keys=True, default=str)


def _from_json(text: str) -> Notification:
    return notification_from_dict(json.loads(text))


def _table_silences(c: _Conn, now: datetime) -> list[Silence]:
    rows = c.execute(f"""select silence_id, matcher, starts_at, ends_at, created_by, comment from {SILENCES}
                         where starts_at <= ? and ends_at > ?""", [now, now])
    return [Silence(json.loads(m), _utc(s), _utc(e), by, comment, sid) for sid, m, s, e, by, comment in rows]


def _assign_incident_groups(c: _Conn, grouping: Grouping, by_name: dict[str, RuleSpec],
                            planned: list[tuple[_Alert, str | None, bool]],
                            now: datetime) -> dict[str, tuple[IncidentGroup, str]]:
    """The incident group of each notified paging alert of this evaluation and its part in it
    (``{alert_id: (group, OPENS | JOINS | UPDATES)}``); records new groups and members and keeps
    the groups of still-firing members open. ``planned``: (alert, transition kind or None, notify)."""
    paging = [(a, kind, notify) for a, kind, notify in planned if by_name[a.rule].delivery == "page"]
    if not paging:
        return {}
    open_by_labels, of_alert, members = _load_incident_groups(c, grouping, now, [a.alert_id for a, _k, _n in paging])
    out: dict[str, tuple[IncidentGroup, str]] = {}
    touched: dict[str, IncidentGroup] = {}
    for a, kind, notify in paging:
        sends = notify and kind is not None
        group = of_alert.get(a.alert_id)
        if group is not None and kind != RESOLVE and not _is_open(group, grouping, now):
            group = None  # its incident closed (no evaluation for a window): it fires into the open one
        if group is None:
            if not sends:
                continue  # a suppressed alert opens no incident and keeps none open
            labels = _group_labels(grouping, _labels(by_name[a.rule], a.subject))
            group = open_by_labels.get(labels)
            if group is None:
                group = IncidentGroup(incident_group_id(labels, now), labels, now, now, is_new=True)
                open_by_labels[labels] = group
        member = (group.group_id, a.alert_id) in members
        if sends:
            out[a.alert_id] = (group, OPENS if group.opened_at == now else UPDATES if member else JOINS)
            if not member:
                members.add((group.group_id, a.alert_id))
                c.execute(f"""insert into {INCIDENT_MEMBERS} select ?, ?, ?, ?
                              where not exists (select 1 from {INCIDENT_MEMBERS}
                                                where group_id = ? and alert_id = ?)""",
                          [group.group_id, a.alert_id, a.rule, now, group.group_id, a.alert_id])
        # a member still firing (notified or not) or resolving now keeps its incident open
        group.last_active_at = max(group.last_active_at, now)
        touched[group.group_id] = group
    for group in touched.values():
        if group.is_new:
            c.execute(f"""insert into {INCIDENT_GROUPS} select ?, ?, ?, ?, ?
                          where not exists (select 1 from {INCIDENT_GROUPS} where group_id = ?)""",
                      [group.group_id, group.group_key, group.group_labels, group.opened_at, group.last_active_at,
                       group.group_id])
        else:
            c.execute(f"update {INCIDENT_GROUPS} set last_active_at = ? where group_id = ? and last_active_at < ?",
                      [group.last_active_at, group.group_id, group.last_active_at])
    return out


def _already_carried(c: _Conn, cond: Condition, rule: RuleSpec, now: datetime) -> bool:
    """A condition marked ``once`` (details ``once`` and ``occurrence``: an episode that began and
    ended between two evaluations) is active until an alert of its key has carried its occurrence:
    one evaluated within the rule's window that fired before ``now`` (one that fired at ``now`` is
    this evaluation retried, which must decide as the first try did)."""
    if not cond.details.get("once") or cond.details.get("occurrence") is None:
        return False
    rows = c.execute(f"select details from {LEDGER} where dedup_key = ? and first_fired_at < ? "
                     "and last_evaluated_at >= ?", [cond.dedup_key, now, now - rule.window])
    for (details,) in rows:
        try:
            carried = json.loads(details or "{}")
            # episode_id: what system_shutdown's details called it before occurrences
            if carried.get("occurrence", carried.get("episode_id")) == cond.details["occurrence"]:
                return True
        except (ValueError, AttributeError):
            continue
    return False


def evaluate(location: Location, conditions: Iterable[Condition], now: datetime, rules: Iterable[RuleSpec],
             silences: Iterable[Silence] | None = None, grouping: Grouping = DEFAULT_GROUPING) -> list[Notification]:
    """Fold ``conditions`` into the ledger at ``now`` (one transaction); the notifications to send.

    Only alerts of ``rules`` are touched: a firing alert of one of them with no active condition
    resolves. ``silences`` add to the active silences of ``alerts.silences``. ``grouping``: how
    paging notifications join incident groups (module docstring). Idempotent: see the module
    docstring (a second call at the same ``now`` returns the same transition ids and group keys).
    """
    now = _utc(now)
    by_name = {r.name: r for r in rules}
    with connect(location) as raw:
        c = _Conn(raw, location)
        _ensure_ddl(c)
        if location.is_postgres:
            c.execute(f"lock table {LEDGER} in share row exclusive mode")
        active: dict[str, Condition] = {}
        for cond in conditions:
            if cond.active and cond.rule in by_name and not _already_carried(c, cond, by_name[cond.rule], now):
                active[cond.dedup_key] = cond
        firing: dict[str, _Alert] = {}
        for row in c.execute(f"select {', '.join(_LEDGER_COLS)} from {LEDGER} where status = ?", [FIRING]):
            a = _Alert(*row)
            a.first_fired_at, a.last_evaluated_at = _utc(a.first_fired_at), _utc(a.last_evaluated_at)
            a.last_notified_at = _utc(a.last_notified_at)
            firing[a.dedup_key] = a
        all_silences = [*_table_silences(c, now), *(s for s in (silences or []) if s.active_at(now))]

        # 1. the new state of every alert of the evaluated rules
        changes: list[tuple[_Alert, str | None]] = []  # (alert, candidate transition kind)
        for key, cond in sorted(active.items()):
            rule = by_name[cond.rule]
            details = json.dumps(cond.details, sort_keys=True, default=str) if cond.details else None
            a = firing.get(key)
            if a is None:
                a = _Alert(alert_id(key, now), cond.rule, cond.subject, key, FIRING, rule.severity, now, now,
                           None, None, cond.value, details, None, is_new=True)
                changes.append((a, FIRED))
            elif now < a.last_evaluated_at:
                continue  # an older tick arriving late changes nothing
            else:
                a.value, a.details, a.severity, a.last_evaluated_at = cond.value, details, rule.severity, now
                a.changed = True
                changes.append((a, REPEAT))
        for key, a in sorted(firing.items()):
            if key in active or a.rule not in by_name or now < a.last_evaluated_at:
                continue
            a.status, a.resolved_at, a.last_evaluated_at, a.changed = RESOLVED, now, now, True
            changes.append((a, RESOLVE))

        # 2. inhibition: alerts firing after this evaluation inhibit the rules they list
        still_firing = [a for a in firing.values() if a.status == FIRING] + [a for a, k in changes if k == FIRED]
        inhibitors: list[tuple[_Alert, str, str]] = []
        for a in still_firing:
            spec = by_name.get(a.rule)
            for inh in spec.inhibits if spec else ():
                inhibitors.append((a, inh.rule, inh.match))

        def suppressed_by(a: _Alert) -> str | None:
            for src, target, match in inhibitors:
                if src is not a and target == a.rule and (match == "any_subject" or src.subject == a.subject):
                    return f"inhibited:{src.dedup_key}"
            labels = _labels(by_name[a.rule], a.subject)
            for s in all_silences:
                if s.matches(labels):
                    return f"silenced:{s.silence_id}"
            return None

        # 3. what each change sends, the incident groups of the paging ones, the writes
        planned: list[tuple[_Alert, str | None, bool]] = []
        for a, kind in changes:
            rule = by_name[a.rule]
            a.suppressed_by = suppressed_by(a)
            if kind == REPEAT:
                due = a.last_notified_at is None or now - a.last_notified_at >= rule.repeat_interval
                kind = REPEAT if (due and a.suppressed_by is None) else None
            notify = a.suppressed_by is None and (kind != RESOLVE or a.last_notified_at is not None)
            planned.append((a, kind, notify))
        incidents = _assign_incident_groups(c, grouping, by_name, planned, now) if grouping.enabled else {}
        for a, kind, notify in planned:
            rule = by_name[a.rule]
            if kind is not None:
                at = a.first_fired_at if kind == FIRED else now
                tid = transition_id(a.dedup_key, kind, at)
                note = _notification(tid, kind, rule, a, now, incidents.get(a.alert_id) if notify else None)
                c.execute(f"""insert into {TRANSITIONS}
                              select ?, ?, ?, ?, ?, ?, ?
                              where not exists (select 1 from {TRANSITIONS} where transition_id = ?)""",
                          [tid, a.alert_id, kind, at, notify, a.suppressed_by, _to_json(note), tid])
                if notify:
                    a.last_notified_at = now
            if a.is_new:
                c.execute(f"insert into {LEDGER} ({', '.join(_LEDGER_COLS)}) values ({', '.join('?' * len(_LEDGER_COLS))})",
                          [getattr(a, col) for col in _LEDGER_COLS])
            else:
                c.execute(f"""update {LEDGER} set status = ?, severity = ?, last_evaluated_at = ?, last_notified_at = ?,
                              resolved_at = ?, value = ?, details = ?, suppressed_by = ? where alert_id = ?""",
                          [a.status, a.severity, a.last_evaluated_at, a.last_notified_at, a.resolved_at, a.value,
                           a.details, a.suppressed_by, a.alert_id])

        # 4. what to send: every notified transition of this instant (a retry returns the same ids)
        rows = c.execute(f"select notification from {TRANSITIONS} where transition_at = ? and notified "
                         f"and notification is not null order by transition_id", [now])
    notes = [_from_json(text) for (text,) in rows]
    return sorted(notes, key=lambda n: (n.group_key or "", n.subject, n.status, n.transition_id))


def run_alerts(location: Location, rules: list[RuleSpec], now: datetime,
               silences: Iterable[Silence] | None = None,
               grouping: Grouping = DEFAULT_GROUPING) -> tuple[list[Notification], Observation]:
    """:func:`observe` then :func:`evaluate` over the rules that could be evaluated."""
    obs = observe(location, rules, now)
    return evaluate(location, obs.conditions, now, obs.evaluated, silences, grouping), obs


# ---------------------------------------------------------------------------------------------
# silences


_SILENCE_KEYS = ("matcher", "starts_at", "ends_at", "created_by", "comment")


def _when(ctx, node, what: str) -> datetime:
    value = _scalar(ctx, node, what)
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ctx.error(node, f"{what}: not a timestamp: {value!r} (use ISO 8601, e.g. 2026-09-01T12:00:00Z)") from None


def load_silences(path: str | Path) -> list[Silence]:
    """Silences from a YAML file: a list (or ``silences:`` holding one) of
    ``{matcher: {rule|subject|<label>: value-or-glob}, starts_at, ends_at, created_by, comment}``.
    Validated like the rules file (errors name the file and line)."""
    path = Path(path)
    ctx, root = _compose(path)
    if root is None:
        return []
    if isinstance(root, MappingNode):
        top = _mapping(ctx, root, "the silences file")
        for k, _v in top:
            if k.value != "silences":
                raise ctx.error(k, f"unknown key '{k.value}' (expected silences)")
        root = top[0][1] if top else None
        if root is None:
            return []
    if not isinstance(root, SequenceNode):
        raise ctx.error(root, "silences must be a list")
    out = []
    for item in root.value:
        fields = dict((k.value, (k, v)) for k, v in _mapping(ctx, item, "silence"))
        for key, (k, _v) in fields.items():
            if key not in _SILENCE_KEYS:
                raise ctx.error(k, f"silence: unknown key '{key}' (allowed: {', '.join(_SILENCE_KEYS)})")
        for key in ("matcher", "ends_at"):
            if key not in fields:
                raise ctx.error(item, f"silence: missing field '{key}'")
        mnode = fields["matcher"][1]
        matcher = {k.value: str(_scalar(ctx, v, f"matcher.{k.value}")) for k, v in _mapping(ctx, mnode, "matcher")}
        if not matcher:
            raise ctx.error(mnode, "silence: an empty matcher would silence everything")
        ends = _when(ctx, fields["ends_at"][1], "ends_at")
        starts = _when(ctx, fields["starts_at"][1], "starts_at") if "starts_at" in fields else \
            datetime(1970, 1, 1, tzinfo=timezone.utc)
        if ends <= starts:
            raise ctx.error(fields["ends_at"][1], "silence: ends_at must be after starts_at")
        by = _value(fields["created_by"][1]) if "created_by" in fields else None
        comment = _value(fields["comment"][1]) if "comment" in fields else None
        out.append(Silence(matcher, starts, ends, None if by is None else str(by),
                           None if comment is None else str(comment)))
    return out


def add_silence(location: Location, matcher: dict[str, str], starts_at: datetime, ends_at: datetime,
                created_by: str | None = None, comment: str | None = None,
                created_at: datetime | None = None) -> Silence:
    """Record a silence in ``alerts.silences`` (the same silence twice is stored once)."""
    if not matcher:
        raise ValueError("an empty matcher would silence everything")
    if _utc(ends_at) <= _utc(starts_at):
        raise ValueError("ends_at must be after starts_at")
    s = Silence(dict(matcher), _utc(starts_at), _utc(ends_at), created_by, comment)
    with connect(location) as raw:
        c = _Conn(raw, location)
        _ensure_ddl(c)
        c.execute(f"""insert into {SILENCES} select ?, ?, ?, ?, ?, ?, ?
                      where not exists (select 1 from {SILENCES} where silence_id = ?)""",
                  [s.silence_id, json.dumps(s.matcher, sort_keys=True), s.starts_at, s.ends_at, created_by, comment,
                   _utc(created_at) or datetime.now(timezone.utc), s.silence_id])
    return s


def sync_silences(location: Location, silences: Iterable[Silence]) -> int:
    """Store file silences in ``alerts.silences`` (idempotent); how many were given."""
    n = 0
    for s in silences:
        add_silence(location, s.matcher, s.starts_at, s.ends_at, s.created_by, s.comment)
        n += 1
    return n


__all__ = ["Condition", "CustomSqlError", "IncidentGroup", "Observation", "Silence", "add_silence",
           "alert_sql_timeout_seconds", "dedup_key", "ensure_schema", "evaluate", "evaluator_location",
           "explain_custom_rules", "incident_group_id", "load_silences", "observe", "render_sql", "require_warehouse",
           "run_alerts", "run_read_only", "sync_silences", "transition_id", "RulesFileError"]
