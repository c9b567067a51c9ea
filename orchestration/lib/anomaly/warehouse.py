"""Anomalies in the warehouse: score the hourly series of ``int_anomaly_series_hourly`` (the dbt
view counting SERIES_SQL's series from fct_system_events) into ``marts.mart_anomalies``.

One run (``refresh_anomalies(warehouse, as_of)``):

1. reads the sparse series rows of the view for the hours of [as_of - history_days, as_of) —
   only complete hours: the scored end is as_of floored to the hour, and never later than the
   view's own window end (a view built with an earlier ``as_of`` var) — nor earlier than the
   first event of the warehouse (hours before the data would be zeros, then every series would
   "spike" when the data starts);
2. densifies them (series.densify: a silent hour is a real zero) and scores every series with
   ``score_series`` (default ``ScoringConfig``): the baseline of an hour comes from earlier
   hours only;
3. replaces the rows of the last ``write_days`` days of that window in ``marts.mart_anomalies``
   (created if missing) with this run's anomalies; older rows are kept. The hours written have
   a full baseline behind them (history_days - write_days >= the scorer's 14-day window), so
   a later run re-scores them the same way.

Columns: series, series_kind, bucket (hour start), observed, expected, expected_low,
expected_high (the expected range), score (-log10 p or robust z; negative for drops), rules
(comma-separated: spike, sustained_rise, drop and the checklist rules), severity (warning /
critical), direction (rise / drop), detected_at (the as_of of the run that wrote the row),
first_detected_at (the as_of of the first run that found it), is_new (found first by this run:
first_detected_at = detected_at). Re-running with the same as_of writes the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd

from orchestration.lib.anomaly.scoring import Anomaly, ScoringConfig, score_series
from orchestration.lib.anomaly.series import densify
from orchestration.lib.db import connect
from orchestration.lib.settings import Location

SCHEMA = "marts"
TABLE = f"{SCHEMA}.mart_anomalies"
SERIES_RELATION = "intermediate.int_anomaly_series_hourly"
FACT_RELATION = f"{SCHEMA}.fct_system_events"

HISTORY_DAYS = 35  # the dbt var anomaly_history_days (the view's window)
WRITE_DAYS = 7

RISE = "rise"
DROP = "drop"
COLUMNS = ("series", "series_kind", "bucket", "observed", "expected", "expected_low", "expected_high",
           "score", "rules", "severity", "direction", "detected_at", "first_detected_at", "is_new")

DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {TABLE} (
        series text not null,
        series_kind text not null,
        bucket timestamptz not null,
        observed double precision not null,
        expected double precision,
        expected_low double precision,
        expected_high double precision,
        score double precision,
        rules text,
        severity text not null,
        direction text not null,
        detected_at timestamptz not null,
        first_detected_at timestamptz not null,
        is_new boolean not null)""",
]


@dataclass(frozen=True)
class AnomalyRow:
    """One row of marts.mart_anomalies."""

    series: str
    series_kind: str
    bucket: datetime
    observed: float
    expected: float | None
    expected_low: float | None
    expected_high: float | None
    score: float | None
    rules: str
    severity: str
    direction: str
    detected_at: datetime
    first_detected_at: datetime
    is_new: bool

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)


@dataclass
class AnomalyRunResult:
    as_of: datetime
    window_start: datetime  # first hour scored (history included)
    window_end: datetime  # exclusive end of the scored hours
    write_start: datetime  # rows of [write_start, window_end) were replaced
    n_series: int
    rows: list[AnomalyRow] = field(default_factory=list)  # this run's anomalies in the write window
    notes: list[str] = field(default_factory=list)

    @property
    def n_anomalies(self) -> int:
        return len(self.rows)

    @property
    def new_anomalies(self) -> list[AnomalyRow]:
        return [r for r in self.rows if r.is_new]

    def new_with_severity(self, severity: str) -> list[AnomalyRow]:
        return [r for r in self.rows if r.is_new and r.severity == severity]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _floor_hour(moment: datetime) -> datetime:
    return _utc(moment).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == _utc(moment) else floor + timedelta(hours=1)


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def direction_of(anomaly: Anomaly) -> str:
    direction = getattr(anomaly, "direction", None)
    if direction in (RISE, DROP):
        return direction
    return DROP if (DROP in anomaly.rules or (anomaly.score is not None and anomaly.score < 0)) else RISE


def read_series_rows(conn, start: datetime, end: datetime, p: str) -> tuple[pd.DataFrame, tuple]:
    """Sparse rows (series, kind, hour, n) of the view for [start, end) and the view's window."""
    rows = conn.execute(
        f"select series, series_kind, hour_start, n_events from {SERIES_RELATION} "
        f"where hour_start >= cast({p} as timestamptz) and hour_start < cast({p} as timestamptz)",
        (start, end)).fetchall()
    window = conn.execute(f"select min(window_start), max(window_end) from {SERIES_RELATION}").fetchone()
    frame = pd.DataFrame(rows, columns=["series", "kind", "hour", "n"])
    frame["n"] = frame["n"].astype("int64")
    return frame, window


def score_rows(rows: pd.DataFrame, start: datetime, end: datetime,
               config: ScoringConfig | None = None) -> tuple[int, list[tuple[str, Anomaly]]]:
    """Densify the sparse rows over [start, end) and score every series: (n series, [(kind, anomaly)])."""
    series = densify(rows, start, end)
    found: list[tuple[str, Anomaly]] = []
    for item in series.values():
        for anomaly in score_series(item.name, item.hours, item.counts, kind=item.kind, config=config):
            found.append((item.kind, anomaly))
    return len(series), found


def refresh_anomalies(warehouse: Location, as_of: datetime | None = None, *, history_days: int = HISTORY_DAYS,
                      write_days: int = WRITE_DAYS, config: ScoringConfig | None = None) -> AnomalyRunResult:
    """Score the warehouse's hourly series up to ``as_of`` (default now) and replace the last
    ``write_days`` days of marts.mart_anomalies with the anomalies found (see the module doc)."""
    as_of = _utc(as_of or datetime.now(timezone.utc))
    end = _floor_hour(as_of)
    start = end - timedelta(days=history_days)
    notes: list[str] = []
    p = "%s" if warehouse.is_postgres else "?"
    with connect(warehouse) as conn:
        for stmt in DDL:
            conn.execute(stmt)
        first_event = conn.execute(f"select min(created_at) from {FACT_RELATION} where not is_deleted").fetchone()[0]
        rows, (view_start, view_end) = read_series_rows(conn, start, end, p)
        if view_end is not None and _floor_hour(view_end) < end:
            notes.append(f"the series view ends at {view_end.isoformat()} (its as_of): scored up to that hour")
            end = _floor_hour(view_end)
        if view_start is not None and _ceil_hour(view_start) > start:
            start = _ceil_hour(view_start)
        if first_event is not None and _floor_hour(first_event) > start:
            start = _floor_hour(first_event)
        start = min(start, end)
        write_start = max(start, end - timedelta(days=write_days))
        rows = rows[(pd.to_datetime(rows["hour"], utc=True) >= start) & (pd.to_datetime(rows["hour"], utc=True) < end)]

        n_series, found = score_rows(rows, start, end, config) if end > start else (0, [])

        previous = dict(
            ((series, _utc(bucket)), _utc(first))
            for series, bucket, first in conn.execute(
                f"select series, bucket, first_detected_at from {TABLE} "
                f"where bucket >= cast({p} as timestamptz) and bucket < cast({p} as timestamptz)",
                (write_start, end)).fetchall())
        out: list[AnomalyRow] = []
        for kind, a in found:
            bucket = _utc(pd.Timestamp(a.bucket).to_pydatetime())
            if not (write_start <= bucket < end):
                continue
            first = min(previous.get((a.series, bucket), as_of), as_of)
            out.append(AnomalyRow(
                series=a.series, series_kind=kind, bucket=bucket, observed=float(a.observed),
                expected=_num(a.expected), expected_low=_num(a.lower), expected_high=_num(a.upper),
                score=_num(a.score), rules=",".join(a.rules), severity=a.severity, direction=direction_of(a),
                detected_at=as_of, first_detected_at=first, is_new=first == as_of))
        out.sort(key=lambda r: (r.bucket, r.series))

        conn.execute(f"delete from {TABLE} where bucket >= cast({p} as timestamptz) and bucket < cast({p} as timestamptz)",
                     (write_start, end))
        if out:
            placeholders = ", ".join([p] * len(COLUMNS))
            cursor = conn.cursor() if warehouse.is_postgres else conn
            cursor.executemany(f"insert into {TABLE} ({', '.join(COLUMNS)}) values ({placeholders})",
                               [r.as_tuple() for r in out])
    return AnomalyRunResult(as_of=as_of, window_start=start, window_end=end, write_start=write_start,
                            n_series=n_series, rows=out, notes=notes)


def markdown_table(rows: list[AnomalyRow], limit: int = 25) -> str:
    """The anomalies as a Markdown table (for Dagster metadata)."""
    if not rows:
        return "none"
    lines = ["| series | hour (UTC) | observed | expected | range | rules | severity |",
             "|---|---|---:|---:|---|---|---|"]
    for r in rows[:limit]:
        expected = "" if r.expected is None else f"{r.expected:.1f}"
        low = "" if r.expected_low is None else f"{r.expected_low:.1f}"
        high = "" if r.expected_high is None else f"{r.expected_high:.1f}"
        lines.append(f"| `{r.series}` | {r.bucket:%Y-%m-%d %H:%M} | {r.observed:g} | {expected} | "
                     f"{low} – {high} | {r.rules} | {r.severity} |")
    if len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more | | | | | | |")
    return "\n".join(lines)
