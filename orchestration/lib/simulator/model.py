"""The simulator's vocabulary: time, ids, jobs, decisions, heartbeats and the summary.

Times are integers of microseconds since the Unix epoch (UTC) throughout the simulator: they
are cheap to compare and to hand to Arrow, and no time zone can slip in.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

TWITTER_EPOCH_MS = 1_288_834_974_657
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# timestamptz 'infinity': DuckDB stores it as the largest int64, so an Arrow timestamp of this
# value lands as 'infinity' there; the PostgreSQL writer spells it out (writers.py)
INFINITY = 2**63 - 1


def to_us(moment: datetime) -> int:
    """A datetime as epoch microseconds; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def iso(micros: int | None) -> str | None:
    return None if micros is None else from_us(micros).isoformat()


def uuid4_from(rng: random.Random) -> str:
    """A version-4 uuid drawn from the seeded generator (same text as ``uuid.UUID(int=…, version=4)``)."""
    n = rng.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def snowflake(micros: int, rng: random.Random) -> str:
    """A tweet id as X mints them: milliseconds since the Twitter epoch in the high bits (19 digits)."""
    return str(((micros // 1000 - TWITTER_EPOCH_MS) << 22) | rng.getrandbits(22))


def activity(micros: int) -> float:
    """Mild daily seasonality: 0.65 at 02:00 UTC, 1.35 at 14:00 UTC."""
    hour = (micros % DAY) / HOUR
    return 1.0 + 0.35 * math.sin(2 * math.pi * (hour - 8) / 24)


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    name: str
    interval_s: int
    jitter_s: int
    duration_s: tuple[float, float]
    failure_rate: float
    skip_rate: float
    critical: bool = False
    failure_word: str = "failure"  # one older writer records "failed"

    @property
    def interval_us(self) -> int:
        return self.interval_s * SECOND


# Failure rates are chosen so that about 13% of job runs and posting attempts fail in normal
# times (the checklist's "10-20% of operations encounter errors").
JOBS: tuple[JobSpec, ...] = (
    JobSpec("posting", 300, 20, (8, 45), 0.11, 0.02, critical=True),
    JobSpec("reply_posting", 1800, 60, (20, 180), 0.12, 0.03, critical=True),
    JobSpec("plan", 3600, 120, (30, 150), 0.10, 0.03, critical=True),
    JobSpec("metrics_scraper", 1200, 60, (20, 240), 0.14, 0.24, critical=True),
    JobSpec("reply_metrics_scraper", 1800, 60, (15, 200), 0.15, 0.05, failure_word="failed"),
    JobSpec("learn", 3600, 120, (10, 90), 0.12, 0.04),
    JobSpec("learning_loop", 86400, 600, (60, 600), 0.10, 0.0),
    JobSpec("job_watchdog", 300, 10, (1, 5), 0.08, 0.0),
    JobSpec("tweet_id_recovery", 1800, 60, (5, 60), 0.12, 0.05, critical=True),
    JobSpec("id_recovery_queue", 300, 15, (1, 10), 0.15, 0.05),
    JobSpec("reply_v2_fetch", 300, 20, (10, 60), 0.16, 0.03, critical=True),
    JobSpec("mega_viral_harvester", 900, 45, (20, 120), 0.18, 0.05),
    JobSpec("truth_integrity", 900, 30, (3, 30), 0.10, 0.0),
    JobSpec("hourly_tick", 3600, 30, (1, 5), 0.03, 0.0),
)
JOBS_BY_NAME: dict[str, JobSpec] = {job.name: job for job in JOBS}

# Natural failure runs are cut at this length so that only injected streaks reach six in a row.
NATURAL_STREAK_CAP = 4


@dataclass
class Outcome:
    status: str  # success | failure | skipped
    error: str | None = None
    error_name: str | None = None
    phase: str | None = None
    skip_reason: str | None = None
    forced: bool = False


# A heartbeat snapshot: (updated_at, last_success, last_failure, last_run_status, last_error,
# consecutive_failures). The real table keeps only the latest; we keep the history so that the
# state "as of" any write window can be upserted.
Heartbeat = tuple[int, int | None, int | None, str, str | None, int]


@dataclass
class JobState:
    spec: JobSpec
    last_success: int | None = None
    last_failure: int | None = None
    status: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    busy_until: int = 0
    started_at: int = 0
    snapshot_times: list[int] = field(default_factory=list)
    snapshots: list[Heartbeat] = field(default_factory=list)
    watchdog_quiet_until: int = 0

    def record(self, at: int) -> None:
        self.snapshot_times.append(at)
        self.snapshots.append(
            (at, self.last_success, self.last_failure, self.status or "running", self.last_error,
             self.consecutive_failures)
        )

    def as_of(self, moment: int) -> Heartbeat | None:
        """The row as a reader would have seen it just before ``moment``."""
        index = bisect_left(self.snapshot_times, moment) - 1
        return self.snapshots[index] if index >= 0 else None


# ---------------------------------------------------------------------------------------------
# Decisions (content_generation_metadata_comprehensive)
# ---------------------------------------------------------------------------------------------

DECISION_COLUMNS = (
    "id", "decision_id", "decision_type", "status", "content", "generator_name", "topic",
    "predicted_er", "quality_score", "scheduled_at", "posted_at", "tweet_id", "thread_tweet_ids",
    "target_tweet_id", "skip_reason", "error_message", "features", "is_test_post", "created_at",
    "updated_at",
)
# Fields the engine reads back while simulating (the others are only written out).
LIVE_DECISION_FIELDS = frozenset({"status", "scheduled_at", "posted_at", "tweet_id", "retry_count"})

# The places in the bot's code that write a decision, and whether each sets updated_at. No
# trigger maintains it, and 62 of the bot's 128 update calls on the table leave it alone: so do
# 7 of these 14 updates (the insert sets it through the column default).
UPDATE_SITES: dict[str, bool] = {
    "insert": True,
    "attempt_claimed": True,  # the claim stamps it, for the stuck-post watchdog
    "post_success": True,
    "post_null_tweet_id": False,
    "failure_requeued": True,
    "failure_final": False,
    "blocked_226": False,
    "db_write_failed": False,
    "stuck_reset": True,
    "stale_skipped": True,
    "stale_archived": False,
    "quality_gate_skipped": True,
    "quality_archived": False,
    "cancelled": True,
    "tweet_id_recovered": False,
}
SITES_WITHOUT_UPDATED_AT = tuple(site for site, sets in UPDATE_SITES.items() if not sets)


class Change(NamedTuple):
    """One write of a decision row: when, which columns, and where in the bot's code."""

    at: int
    fields: dict[str, Any]
    site: str


@dataclass
class Decision:
    """One decision row and its history of in-place updates."""

    seq: int
    decision_id: str
    decision_type: str  # single | thread | reply
    created_at: int
    content: str
    generator_name: str
    topic: str
    predicted_er: float
    quality_score: float
    target_tweet_id: str | None
    features: dict[str, Any]
    is_test_post: bool
    thread_length: int = 1
    # False models the bot: updated_at moves only at the call sites that set it (UPDATE_SITES)
    every_change_sets_updated_at: bool = False
    # live state, as of the latest change the engine has made
    status: str = "queued"
    scheduled_at: int = 0
    posted_at: int | None = None
    tweet_id: str | None = None
    retry_count: int = 0
    in_null_burst: bool = False
    recovery_pending: bool = False
    history: list[Change] = field(default_factory=list)

    def change(self, at: int, site: str, **fields: Any) -> None:
        """Update the row at ``at`` from call site ``site`` (a key of UPDATE_SITES)."""
        if site not in UPDATE_SITES:
            raise KeyError(f"unknown decision update site {site!r}")
        if self.history and at < self.history[-1].at:
            at = self.history[-1].at  # updates never go back in time (as_of relies on the order)
        for name in LIVE_DECISION_FIELDS.intersection(fields):
            setattr(self, name, fields[name])
        self.history.append(Change(at, fields, site))

    def sets_updated_at(self, change: Change) -> bool:
        return self.every_change_sets_updated_at or UPDATE_SITES[change.site]

    def touched_in(self, lo: int | None, hi: int | None) -> bool:
        """Whether any change (updated_at set or not: the row changes in place) falls in [lo, hi)."""
        return any((lo is None or c.at >= lo) and (hi is None or c.at < hi) for c in self.history)

    def changes_before(self, moment: int | None) -> list[Change]:
        return [c for c in self.history if moment is None or c.at < moment]

    def state_as_of(self, moment: int | None) -> dict[str, Any] | None:
        """The row as it stood just before ``moment`` (None: after all changes). Its updated_at
        is the time of the latest change that set it (or created_at)."""
        if moment is not None and self.created_at >= moment:
            return None
        state: dict[str, Any] = {
            "status": None, "scheduled_at": None, "posted_at": None, "tweet_id": None,
            "thread_tweet_ids": None, "skip_reason": None, "error_message": None, "retry_count": 0,
        }
        updated_at = self.created_at
        for change in self.changes_before(moment):
            state.update(change.fields)
            if self.sets_updated_at(change):
                updated_at = change.at
        state["updated_at"] = updated_at
        return state


# ---------------------------------------------------------------------------------------------
# Output rows
# ---------------------------------------------------------------------------------------------

# Rows are kept in their table's column order so that they go to Arrow without reshuffling.
# system_events: (id, event_type, event_data, metadata, severity, message, component, timestamp,
# created_at, commit_at). commit_at (not a column) is when the row becomes visible; it differs
# from created_at only for late-committed rows.
EventRow = tuple[str, str, str | None, str | None, str | None, str | None, str | None, int, int, int]
COMMIT_AT = 9
# posting_attempts: (id, job_type, decision_id, target_tweet_id, tweet_id, status, error_message,
# metrics, created_at)
AttemptRow = tuple[str, str, str, str | None, str | None, str, str | None, str, int]
# metrics_scraper_runs: (id, run_at, runner_mode, status, eligible, scraped, updated, skipped,
# failed, duration_ms, skip_reason, error_message)
ScraperRunRow = tuple[int, int, bool, str, int, int, int, int, int, int, str | None, str | None]


@dataclass
class SimulationSummary:
    start: datetime
    end: datetime
    seed: int
    rows: dict[str, int]
    deleted_events: int
    incidents: list[dict[str, Any]]
    truth_path: Path | None
    seconds: float
    # the bot's habits (habits.py): truth records like the incidents', kept apart from them
    # because they are no behaviour for a detector to find
    habits: list[dict[str, Any]] = field(default_factory=list)
    deleted_decisions: int = 0

    def __str__(self) -> str:
        tables = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        return (f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC, seed {self.seed}: "
                f"{tables}; {len(self.incidents)} incidents; {len(self.habits)} bot habits; "
                f"{self.seconds:.1f}s; truth in {self.truth_path}")

    def incidents_per_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for incident in self.incidents:
            counts[incident["kind"]] = counts.get(incident["kind"], 0) + 1
        return dict(sorted(counts.items()))

    def habit_counts(self) -> dict[str, int]:
        return {habit["kind"]: habit["details"]["count"] for habit in self.habits}
