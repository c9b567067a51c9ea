"""Data gathering for the reports: read-only queries on the marts → plain dicts and lists.

Every query is portable SQL (DuckDB and PostgreSQL; timestamps as ``timestamptz`` literals,
sessions in UTC). Each section is gathered on its own: a relation that does not exist gives the
section the status ``missing`` (the report still builds), a period without rows gives
``empty``. Numbers are normalised to Python ``int`` / ``float`` (PostgreSQL returns ``Decimal``
for sums) and rounded, so both engines give the same values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from orchestration.lib.analyst_copy import analyst_copy_path
from orchestration.lib.db import DuckDBLockedError, read_query
from orchestration.lib.reports.period import Period
from orchestration.lib.settings import Location

OK, EMPTY, MISSING = "ok", "empty", "missing"

FACTS = "marts.fct_system_events"
TRENDS = "marts.mart_error_trends_hourly"
EVENT_TEMPLATES = "marts.error_event_templates"
TEMPLATE_ALIASES = "marts.error_template_aliases"
TEMPLATES = "marts.mart_error_templates"
JOB_RUNS = "intermediate.int_job_runs"
JOB_PERFORMANCE = "marts.mart_job_performance"
POSTING_HOURLY = "marts.mart_posting_health_hourly"
POSTING_DAILY = "marts.mart_posting_health_daily"
SLO = "marts.mart_slo_scorecard"
SHUTDOWNS = "marts.mart_shutdown_episodes"
ANOMALIES = "marts.mart_anomalies"

# a template "rises" like in mart_template_rank_7d_30d (dbt vars trend_riser_min_*)
RISER_MIN_INCREASE = 5
RISER_MIN_RATIO = 1.5
TOP_TEMPLATES = 10

Query = Callable[[str], list[dict[str, Any]]]


@dataclass
class SectionData:
    id: str
    title: str
    relations: tuple[str, ...]
    status: str = OK  # ok | empty | missing
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportData:
    period: Period
    first_event_at: datetime | None
    prev_covered: bool  # the data covers the whole previous period (else no deltas)
    sections: dict[str, SectionData]
    headline: dict[str, Any]  # name -> value (None = no data)


def ts(at: datetime) -> str:
    """A portable timestamptz literal."""
    return f"cast('{at.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S')}+00:00' as timestamptz)"


def num(value: Any, digits: int = 6) -> Any:
    """Decimal → int/float; floats rounded (engines sum doubles in different orders)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return round(value, digits)
    return value


def as_utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value


def _query_fn(location: Location) -> Query:
    """Queries on the warehouse; while a run holds an embedded warehouse's file, on the analyst
    copy the last successful run published (the report covers finished periods, which the copy
    holds), else the lock error naming the holder."""
    reading = [location]

    def q(sql: str) -> list[dict[str, Any]]:
        try:
            columns, rows = read_query(reading[0], sql)
        except DuckDBLockedError:
            copy = analyst_copy_path(location)
            if reading[0] is not location or copy is None or not copy.is_file():
                raise
            reading[0] = Location.parse(str(copy))
            columns, rows = read_query(reading[0], sql)
        return [{c: as_utc(num(v)) for c, v in zip(columns, row)} for row in rows]
    return q


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 6)


def _bucket_of(period: Period, at: datetime) -> datetime:
    at = as_utc(at)
    return at.replace(minute=0, second=0, microsecond=0) if period.bucket == "hour" else \
        at.replace(hour=0, minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------------------------


def gather(location: Location, period: Period) -> ReportData:
    return gather_with(_query_fn(location), period)


def gather_with(q: Query, period: Period) -> ReportData:
    """All sections from a query function (``sql -> list of row dicts``)."""
    existing = {f"{r['table_schema']}.{r['table_name']}" for r in q(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('marts', 'intermediate')")}
    first = None
    if FACTS in existing:
        first = q(f"select min(created_at) as first_at from {FACTS} where not is_deleted")[0]["first_at"]
    prev_covered = first is not None and first <= period.prev_start
    sections: dict[str, SectionData] = {}
    for fn in (_error_trends, _templates, _jobs, _posting, _slo, _shutdowns, _anomalies):
        section = fn(q, period, prev_covered)
        missing = [r for r in section.relations if r not in existing]
        if missing:
            section = SectionData(section.id, section.title, section.relations, MISSING,
                                  f"not available: {', '.join(missing)} missing")
        else:
            section = section.fill()  # type: ignore[attr-defined]
        sections[section.id] = section
    headline = _headline(sections, prev_covered)
    if first is None or first >= period.end:  # the period is before the data: no figure is a real zero
        headline = dict.fromkeys(headline)
    return ReportData(period, first, prev_covered, sections, headline)


class _Lazy(SectionData):
    """A section whose queries run only when its relations exist (``fill``)."""

    def __init__(self, id: str, title: str, relations: tuple[str, ...], compute: Callable[[], tuple[str, str, dict]]):
        super().__init__(id, title, relations)
        self._compute = compute

    def fill(self) -> SectionData:
        status, note, data = self._compute()
        return SectionData(self.id, self.title, self.relations, status, note, data)


def _error_trends(q: Query, p: Period, prev_covered: bool) -> SectionData:
    def compute():
        rows = q(f"""select hour_start, dimension, dimension_value, n_errors, n_operations from {TRENDS}
                     where dimension in ('total', 'severity') and hour_start >= {ts(p.prev_start)}
                       and hour_start < {ts(p.end)} order by hour_start, dimension, dimension_value""")
        cur = [r for r in rows if r["hour_start"] >= p.start]
        prev = [r for r in rows if r["hour_start"] < p.start]
        buckets = p.buckets()
        index = {b: i for i, b in enumerate(buckets)}
        prev_index = {b: i for i, b in enumerate(p.buckets(p.prev_start, p.start))}
        totals: list[int | None] = [None] * len(buckets)
        operations: list[int | None] = [None] * len(buckets)
        prev_totals: list[int | None] = [None] * len(buckets)
        prev_ops: list[int | None] = [None] * len(buckets)
        by_severity: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
        for r in cur:
            i = index[_bucket_of(p, r["hour_start"])]
            if r["dimension"] == "total":
                totals[i] = (totals[i] or 0) + r["n_errors"]
                operations[i] = (operations[i] or 0) + r["n_operations"]
            else:
                by_severity[r["dimension_value"]][i] += r["n_errors"]
        for r in prev:
            i = prev_index[_bucket_of(p, r["hour_start"])]
            if r["dimension"] == "total" and i < len(buckets):
                prev_totals[i] = (prev_totals[i] or 0) + r["n_errors"]
                prev_ops[i] = (prev_ops[i] or 0) + r["n_operations"]
        n_hours = sum(1 for r in cur if r["dimension"] == "total")
        errors = sum(r["n_errors"] for r in cur if r["dimension"] == "total")
        ops = sum(r["n_operations"] for r in cur if r["dimension"] == "total")
        prev_total_rows = [r for r in prev if r["dimension"] == "total"]
        errors_prev = sum(r["n_errors"] for r in prev_total_rows) if prev_covered else None
        ops_prev = sum(r["n_operations"] for r in prev_total_rows) if prev_covered else None
        data = {
            "buckets": buckets, "errors_per_bucket": totals, "operations_per_bucket": operations,
            "prev_errors_per_bucket": prev_totals if prev_covered else [None] * len(buckets),
            "rate_per_bucket": [ratio(e, o) for e, o in zip(totals, operations)],
            "prev_rate_per_bucket": [ratio(e, o) for e, o in zip(prev_totals, prev_ops)] if prev_covered
            else [None] * len(buckets),
            "by_severity": dict(sorted(by_severity.items())), "n_hours": n_hours,
            "errors": errors if n_hours else None, "operations": ops if n_hours else None,
            "error_rate": ratio(errors, ops), "errors_prev": errors_prev, "operations_prev": ops_prev,
            "error_rate_prev": ratio(errors_prev, ops_prev),
        }
        if not n_hours:
            return EMPTY, "no data in this period", data
        hours = int((p.end - p.start).total_seconds() // 3600)
        note = "" if n_hours == hours else f"the warehouse covers {n_hours} of the period's {hours} hours"
        return OK, note, data
    return _Lazy("error-trends", "Error trends", (TRENDS,), compute)


def _templates(q: Query, p: Period, prev_covered: bool) -> SectionData:
    def compute():
        rows = q(f"""with ev as (
                       select coalesce(a.template_id, m.template_id) as template_id, f.created_at
                       from {FACTS} f
                       join {EVENT_TEMPLATES} m on m.event_id = f.event_id
                       left join {TEMPLATE_ALIASES} a on a.old_id = m.template_id
                       where not f.is_deleted and f.created_at >= {ts(p.prev_start)} and f.created_at < {ts(p.end)})
                     select ev.template_id, t.template, t.first_seen_at,
                            sum(case when ev.created_at >= {ts(p.start)} then 1 else 0 end) as n_events,
                            sum(case when ev.created_at < {ts(p.start)} then 1 else 0 end) as n_events_prev
                     from ev join {TEMPLATES} t on t.template_id = ev.template_id
                     group by ev.template_id, t.template, t.first_seen_at""")
        items = []
        for r in rows:
            n, prev = int(r["n_events"]), (int(r["n_events_prev"]) if prev_covered else None)
            new = r["first_seen_at"] is not None and p.start <= r["first_seen_at"] < p.end
            change = None if prev is None else n - prev
            riser = prev is not None and change >= RISER_MIN_INCREASE and n >= RISER_MIN_RATIO * prev
            items.append({"template_id": r["template_id"], "template": r["template"], "n_events": n,
                          "n_events_prev": prev, "change": change, "is_new": new, "is_riser": riser})
        current = [i for i in items if i["n_events"] > 0]
        total = sum(i["n_events"] for i in current)
        for i in current:
            i["share"] = ratio(i["n_events"], total)
        top = sorted(current, key=lambda i: (-i["n_events"], i["template"], i["template_id"]))[:TOP_TEMPLATES]
        risers = sorted([i for i in current if i["is_riser"]],
                        key=lambda i: (-i["change"], i["template"], i["template_id"]))[:TOP_TEMPLATES]
        data = {"top": top, "risers": risers, "n_templates": len(current), "n_templated_errors": total,
                "n_new": sum(1 for i in current if i["is_new"])}
        if not current:
            return EMPTY, "no data in this period", data
        return OK, "" if prev_covered else "no previous period in the data: risers not judged", data
    return _Lazy("templates", "Top error templates and risers", (FACTS, EVENT_TEMPLATES, TEMPLATE_ALIASES, TEMPLATES),
                 compute)


def _jobs(q: Query, p: Period, prev_covered: bool) -> SectionData:
    def compute():
        cells = q(f"""select job_name, date_trunc('{p.bucket}', run_at) as bucket, count(*) as runs,
                             sum(case when outcome = 'failure' then 1 else 0 end) as failures
                      from {JOB_RUNS} where run_at >= {ts(p.start)} and run_at < {ts(p.end)}
                      group by job_name, date_trunc('{p.bucket}', run_at)""")
        prev = q(f"""select count(*) as runs, sum(case when outcome = 'failure' then 1 else 0 end) as failures
                     from {JOB_RUNS} where run_at >= {ts(p.prev_start)} and run_at < {ts(p.start)}""")[0]
        perf = q(f"""select job_name, sum(runs) as runs, sum(successes) as successes, sum(failures) as failures,
                            sum(skips) as skips, sum(slow_runs) as slow_runs,
                            max(longest_failure_streak) as longest_failure_streak,
                            max(duration_p95_minutes) as max_p95_minutes,
                            sum(case when is_stale then 1 else 0 end) as stale_days
                     from {JOB_PERFORMANCE}
                     where period = 'day' and period_start >= {ts(p.start)} and period_start < {ts(p.end)}
                     group by job_name""")
        jobs = sorted(perf, key=lambda r: (-(r["failures"] or 0), r["job_name"]))
        for j in jobs:
            j["failure_rate"] = ratio(j["failures"], j["runs"])
        grid = sorted({(r["job_name"], _bucket_of(p, r["bucket"])): r for r in cells}.items())
        data = {"jobs": jobs, "cells": [dict(r, bucket=b) for (_j, b), r in grid],
                "runs": sum(r["runs"] for r in cells), "failures": sum(r["failures"] or 0 for r in cells),
                "failures_prev": (prev["failures"] or 0) if prev_covered else None,
                "worst_job": jobs[0]["job_name"] if jobs and jobs[0]["failures"] else None}
        if not cells:
            return EMPTY, "no data in this period", data
        return OK, "", data
    return _Lazy("jobs", "Job failures", (JOB_RUNS, JOB_PERFORMANCE), compute)


def _posting(q: Query, p: Period, prev_covered: bool) -> SectionData:
    relation, column = (POSTING_HOURLY, "hour_start") if p.bucket == "hour" else (POSTING_DAILY, "day_start")

    def compute():
        rows = q(f"""select {column} as bucket, n_posted, n_failed, n_blocked, n_skipped, n_null_tweet_id,
                            n_attempts, n_attempts_succeeded, n_timed_attempts, avg_attempt_minutes
                     from {relation} where {column} >= {ts(p.prev_start)} and {column} < {ts(p.end)}
                     order by {column}""")
        cur = [r for r in rows if r["bucket"] >= p.start]
        prev = [r for r in rows if r["bucket"] < p.start]

        def totals(rs):
            t = {k: sum(r[k] or 0 for r in rs) for k in ("n_posted", "n_failed", "n_blocked", "n_skipped",
                                                          "n_null_tweet_id", "n_attempts", "n_attempts_succeeded")}
            timed = sum(r["n_timed_attempts"] or 0 for r in rs)
            t["avg_attempt_minutes"] = ratio(sum((r["avg_attempt_minutes"] or 0) * (r["n_timed_attempts"] or 0)
                                                 for r in rs), timed)
            t["success_rate"] = ratio(t["n_posted"], t["n_posted"] + t["n_failed"] + t["n_blocked"])
            return t
        index = {b: i for i, b in enumerate(p.buckets())}
        per_bucket = {k: [None] * len(index) for k in ("n_posted", "n_failed", "n_blocked", "n_null_tweet_id",
                                                        "success_rate")}
        for r in cur:
            i = index[_bucket_of(p, r["bucket"])]
            for k in ("n_posted", "n_failed", "n_blocked", "n_null_tweet_id"):
                per_bucket[k][i] = r[k]
            per_bucket["success_rate"][i] = ratio(r["n_posted"], r["n_posted"] + r["n_failed"] + r["n_blocked"])
        data = {"relation": relation, "buckets": p.buckets(), "per_bucket": per_bucket, "n_buckets": len(cur),
                "totals": totals(cur) if cur else None, "totals_prev": totals(prev) if prev_covered else None}
        if not cur:
            return EMPTY, "no data in this period", data
        return OK, "", data
    return _Lazy("posting", "Posting health", (relation,), compute)


def _slo(q: Query, p: Period, prev_covered: bool) -> SectionData:
    def compute():
        rows = q(f"""select week_start, week_end, is_complete_week, metric, checklist_target, comparison,
                            target_value, target_upper, unit, actual_value, status, no_data_reason
                     from {SLO} where week_start < {ts(p.end)} and week_end > {ts(p.start)}
                     order by week_start, metric""")
        weeks = sorted({r["week_start"] for r in rows})
        metrics = sorted({r["metric"] for r in rows})
        data = {"rows": rows, "weeks": weeks, "metrics": metrics,
                "met": sum(1 for r in rows if r["status"] == "met"),
                "missed": sum(1 for r in rows if r["status"] == "missed"),
                "missed_metrics": sorted({r["metric"] for r in rows if r["status"] == "missed"})}
        if not rows:
            return EMPTY, "no data in this period", data
        partial = [w for w in weeks if not all(r["is_complete_week"] for r in rows if r["week_start"] == w)]
        note = "SLOs are scored per ISO week: the weeks overlapping the period" + (
            f"; partial weeks: {', '.join(w.strftime('%Y-%m-%d') for w in partial)}" if partial else "")
        return OK, note, data
    return _Lazy("slo", "SLO scorecard", (SLO,), compute)


def _overlap_minutes(start: datetime, end: datetime, lo: datetime, hi: datetime) -> float:
    return max(0.0, (min(end, hi) - max(start, lo)).total_seconds() / 60.0)


def _shutdowns(q: Query, p: Period, prev_covered: bool) -> SectionData:
    def compute():
        rows = q(f"""select episode_id, shutdown_start_at, shutdown_end_at, is_ongoing, duration_minutes,
                            dominant_block_reason, n_errors_before, error_families_before
                     from {SHUTDOWNS}
                     where shutdown_start_at < {ts(p.end)}
                       and (shutdown_end_at is null or shutdown_end_at > {ts(p.prev_start)})
                     order by shutdown_start_at, episode_id""")
        episodes, prev_n, prev_minutes = [], 0, 0.0
        for r in rows:
            end = r["shutdown_end_at"] or p.as_of
            r["end_or_as_of"] = end
            cur_min = _overlap_minutes(r["shutdown_start_at"], end, p.start, p.end)
            prev_min = _overlap_minutes(r["shutdown_start_at"], end, p.prev_start, p.start)
            if r["shutdown_start_at"] < p.end and end > p.start:
                episodes.append(dict(r, minutes_in_period=round(cur_min, 3)))
            if r["shutdown_start_at"] < p.start and end > p.prev_start:
                prev_n += 1
                prev_minutes += prev_min
        data = {"episodes": episodes, "shutdowns": len(episodes),
                "minutes": round(float(sum(e["minutes_in_period"] for e in episodes)), 1),
                "shutdowns_prev": prev_n if prev_covered else None,
                "minutes_prev": round(float(prev_minutes), 1) if prev_covered else None}
        if not episodes:
            return EMPTY, "no shutdown in this period", data
        return OK, "", data
    return _Lazy("shutdowns", "Shutdowns", (SHUTDOWNS,), compute)


def _anomalies(q: Query, p: Period, prev_covered: bool) -> SectionData:
    def compute():
        rows = q(f"""select series, series_kind, bucket, observed, expected, expected_low, expected_high, score,
                            rules, severity, direction
                     from {ANOMALIES} where bucket >= {ts(p.prev_start)} and bucket < {ts(p.end)}
                     order by bucket, series""")
        cur = [r for r in rows if r["bucket"] >= p.start]
        data = {"anomalies": cur, "count": len(cur),
                "critical": sum(1 for r in cur if r["severity"] == "critical"),
                "count_prev": (len(rows) - len(cur)) if prev_covered else None,
                "series": sorted({r["series"] for r in cur})}
        if not cur:
            return EMPTY, "no anomaly in this period", data
        return OK, "", data
    return _Lazy("anomalies", "Anomalies", (ANOMALIES,), compute)


def _headline(s: dict[str, SectionData], prev_covered: bool) -> dict[str, Any]:
    def get(section: str, *path: str) -> Any:
        value: Any = s[section].data if s[section].status != MISSING else None
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return {
        "errors": get("error-trends", "errors"),
        "errors_prev": get("error-trends", "errors_prev"),
        "error_rate": get("error-trends", "error_rate"),
        "error_rate_prev": get("error-trends", "error_rate_prev"),
        "posts": get("posting", "totals", "n_posted"),
        "posts_prev": get("posting", "totals_prev", "n_posted"),
        "post_success_rate": get("posting", "totals", "success_rate"),
        "post_success_rate_prev": get("posting", "totals_prev", "success_rate"),
        "null_tweet_ids": get("posting", "totals", "n_null_tweet_id"),
        "null_tweet_ids_prev": get("posting", "totals_prev", "n_null_tweet_id"),
        "job_failures": get("jobs", "failures"),
        "job_failures_prev": get("jobs", "failures_prev"),
        "worst_job": get("jobs", "worst_job"),
        "shutdowns": get("shutdowns", "shutdowns"),
        "shutdowns_prev": get("shutdowns", "shutdowns_prev"),
        "shutdown_minutes": get("shutdowns", "minutes"),
        "shutdown_minutes_prev": get("shutdowns", "minutes_prev"),
        "anomalies": get("anomalies", "count"),
        "anomalies_prev": get("anomalies", "count_prev"),
        "anomalies_critical": get("anomalies", "critical"),
        "slo_missed": get("slo", "missed"),
        "slo_met": get("slo", "met"),
    }

