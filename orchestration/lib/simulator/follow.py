"""``follow()``: keep appending system_events in real time at a given rate (live demos, load tests).

The mix of events is the bot's own: one day is simulated (without incidents) and its events are
replayed in order, cycling, each with a fresh id and the current time. Batches are written once
a second, each in its own transaction. A DuckDB file is opened per batch so that other processes
(the extractor) can get at it between batches.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from orchestration.lib.settings import Location
from orchestration.lib.simulator.generate import Timeline
from orchestration.lib.simulator.model import DAY, SECOND, to_us, uuid4_from
from orchestration.lib.simulator.simulate import default_end
from orchestration.lib.simulator.writers import SYSTEM_EVENTS, SourceWriter, open_writer
from orchestration.lib.source.schema import create_source_schema

# (event_type, event_data, metadata, severity, message, component)
Template = tuple[str, str | None, str | None, str | None, str | None, str | None]


@dataclass
class FollowSummary:
    events: int
    batches: int
    seconds: float


def follow(target: Location, *, rate_per_second: float, seed: int,
           duration_seconds: float | None = None) -> FollowSummary:
    """Append about ``rate_per_second`` events per second until the duration elapses or Ctrl-C."""
    if rate_per_second <= 0:
        raise ValueError("--rate must be > 0 events per second")
    create_source_schema(target)  # keeps existing rows
    templates = _one_day_of_events(seed)
    rng = random.Random(f"{seed}:follow")
    began = time.monotonic()
    written = batches = 0
    writer: SourceWriter | None = open_writer(target) if target.is_postgres else None
    interrupted = False
    try:
        while duration_seconds is None or time.monotonic() - began < duration_seconds:
            time.sleep(max(0.0, began + batches + 1 - time.monotonic()))
            elapsed = time.monotonic() - began
            if duration_seconds is not None:
                elapsed = min(elapsed, duration_seconds)
            owed = int(rate_per_second * elapsed) - written
            batches += 1
            if owed <= 0:
                continue
            rows = _stamp(templates, written, owed, rng)
            _write_batch(target, writer, rows)
            written += owed
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if writer is not None:
            writer.abort() if interrupted else writer.close()
    return FollowSummary(events=written, batches=batches, seconds=time.monotonic() - began)


def _one_day_of_events(seed: int) -> list[Template]:
    end = default_end()
    # no habits: their odd rows (poison payloads, bad times) would be replayed as ordinary ones
    timeline = Timeline(seed=seed, start=to_us(end) - DAY, end=to_us(end), incidents=False, bot_habits=False)
    events = [e for chunk in timeline.chunks() for e in chunk.events]
    events.sort(key=lambda e: e[8])
    return [e[1:7] for e in events]


def _stamp(templates: list[Template], offset: int, count: int, rng: random.Random) -> list[tuple]:
    """The next ``count`` templates as rows stamped over the last second, oldest first."""
    now = to_us(datetime.now(timezone.utc))
    rows = []
    for index in range(count):
        template = templates[(offset + index) % len(templates)]
        at = now - SECOND + (index + 1) * SECOND // count
        rows.append((uuid4_from(rng), *template, at, at))
    return rows


def _write_batch(target: Location, writer: SourceWriter | None, rows: list[tuple]) -> None:
    if writer is not None:
        writer.insert(SYSTEM_EVENTS, SYSTEM_EVENTS.to_arrow(rows))
        writer.end_batch()
        return
    duck = open_writer(target)
    try:
        duck.insert(SYSTEM_EVENTS, SYSTEM_EVENTS.to_arrow(rows))
    except BaseException:
        duck.abort()
        raise
    duck.close()


# ---------------------------------------------------------------------------------------------
# Follow with incidents: a timeline simulated ahead of time, written as the clock reaches its rows
# ---------------------------------------------------------------------------------------------


class LiveTimeline:
    """The bot's life over [start, end) simulated up front by the engine (``Timeline``, with the
    given incidents placed by hand and run by the simulator's own incident steps), then written into
    a source the way the bot writes it: ``write_until(hi)`` appends the events (at their commit
    time), posting attempts and scraper runs up to ``hi`` and upserts the decisions and heartbeats
    changed since the last call at their state as of ``hi``. ``start`` .. the first call is the
    history; later calls follow the clock (``hi`` = now). Returns the rows written per table."""

    def __init__(self, target: Location, *, seed: int, start: datetime, end: datetime,
                 incidents: list | None = None, steps=None) -> None:
        """``steps``: more of the engine's actions to schedule before the timeline runs, as a
        callable taking the ``Timeline`` (e.g. a planner catch-up before an incident)."""
        from orchestration.lib.simulator import background
        from orchestration.lib.simulator.incidents import IncidentBook

        self.target = target
        self.timeline = Timeline(seed=seed, start=to_us(start), end=to_us(end), incidents=False, bot_habits=False)
        # the incidents, through the engine's own hooks: the book the jobs consult, and the steps
        # (spikes, breaker events, planner catch-ups) the background schedules for each
        self.timeline.book = IncidentBook(list(incidents or []))
        for incident in self.timeline.book.incidents:
            background.INCIDENT_STEPS[incident.kind](self.timeline, incident)
        if steps is not None:
            steps(self.timeline)
        self.events: list[tuple] = []
        self.attempts: list[tuple] = []
        self.scraper_runs: list[tuple] = []
        for chunk in self.timeline.chunks():
            self.events += chunk.events
            self.attempts += chunk.attempts
            self.scraper_runs += chunk.scraper_runs
        from orchestration.lib.simulator.model import COMMIT_AT

        self.events.sort(key=lambda e: e[COMMIT_AT])
        self.attempts.sort(key=lambda r: r[-1])
        self.scraper_runs.sort(key=lambda r: r[1])
        self._commit_at = COMMIT_AT
        self.written_to: int | None = None
        self._cursor = {"events": 0, "attempts": 0, "runs": 0}

    def _take(self, name: str, rows: list[tuple], index: int, hi: int) -> list[tuple]:
        lo = self._cursor[name]
        end = lo
        while end < len(rows) and rows[end][index] < hi:
            end += 1
        self._cursor[name] = end
        return rows[lo:end]

    def write_until(self, hi_at: datetime) -> dict[str, int]:
        from orchestration.lib.simulator.simulate import _upsert_decisions, _upsert_heartbeats
        from orchestration.lib.simulator.writers import METRICS_SCRAPER_RUNS, POSTING_ATTEMPTS

        hi = to_us(hi_at)
        if self.written_to is not None and hi <= self.written_to:
            return {}
        events = self._take("events", self.events, self._commit_at, hi)
        attempts = self._take("attempts", self.attempts, -1, hi)
        runs = self._take("runs", self.scraper_runs, 1, hi)
        writer = open_writer(self.target)
        try:
            for shape, rows in ((SYSTEM_EVENTS, events), (POSTING_ATTEMPTS, attempts), (METRICS_SCRAPER_RUNS, runs)):
                for offset in range(0, len(rows), 50_000):
                    writer.insert(shape, shape.to_arrow(rows[offset:offset + 50_000]))
            decisions = _upsert_decisions(writer, self.timeline.decisions, self.written_to, hi, {})
            heartbeats = _upsert_heartbeats(writer, self.timeline.jobs.values(), hi)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        self.written_to = hi
        return {"system_events": len(events), "posting_attempts": len(attempts), "metrics_scraper_runs": len(runs),
                "decisions": decisions, "job_heartbeats": heartbeats}

    def written_rows(self, hi_at: datetime) -> list[tuple]:
        """The events written by ``hi_at`` (what the incidents' first rows are looked up in)."""
        hi = to_us(hi_at)
        return [e for e in self.events if e[self._commit_at] < hi]
