"""Report periods: the last full UTC day / ISO week / calendar month ending at or before as_of."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

PERIODS = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class Period:
    kind: str  # daily | weekly | monthly
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    prev_start: datetime  # the previous period of the same kind: [prev_start, start)
    as_of: datetime
    bucket: str  # "hour" (daily) or "day" (weekly, monthly): the buckets of the charts

    @property
    def prev_end(self) -> datetime:
        return self.start

    @property
    def label(self) -> str:
        if self.kind == "daily":
            return self.start.strftime("%Y-%m-%d")
        if self.kind == "weekly":
            iso = self.start.isocalendar()
            return f"{iso.year}-W{iso.week:02d} ({self.start:%Y-%m-%d} – {self.end - timedelta(days=1):%Y-%m-%d})"
        return self.start.strftime("%B %Y")

    @property
    def prev_label(self) -> str:
        return {"daily": "previous day", "weekly": "previous week", "monthly": "previous month"}[self.kind]

    def buckets(self, start: datetime | None = None, end: datetime | None = None) -> list[datetime]:
        """Bucket starts of [start, end) (default: the period)."""
        step = timedelta(hours=1) if self.bucket == "hour" else timedelta(days=1)
        at, stop, out = start or self.start, end or self.end, []
        while at < stop:
            out.append(at)
            at += step
        return out

    def bucket_label(self, at: datetime) -> str:
        return at.strftime("%H:00") if self.bucket == "hour" else at.strftime("%a %d" if self.kind == "weekly" else "%d")

    def position(self, at: datetime) -> float:
        """0–1 along the period (clipped)."""
        span = (self.end - self.start).total_seconds()
        return min(1.0, max(0.0, (at - self.start).total_seconds() / span))


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return value.astimezone(timezone.utc)


def _month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_for(kind: str, as_of: datetime) -> Period:
    """The last full period of ``kind`` ending at or before ``as_of`` and the one before it."""
    if kind not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {kind!r}")
    as_of = utc(as_of)
    day = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "daily":
        end = day
        start = end - timedelta(days=1)
        prev_start = start - timedelta(days=1)
    elif kind == "weekly":
        end = day - timedelta(days=day.weekday())  # Monday 00:00 UTC
        start = end - timedelta(days=7)
        prev_start = start - timedelta(days=7)
    else:
        end = _month_start(as_of)
        start = _month_start(end - timedelta(days=1))
        prev_start = _month_start(start - timedelta(days=1))
    return Period(kind, start, end, prev_start, as_of, "hour" if kind == "daily" else "day")
