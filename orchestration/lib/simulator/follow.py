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
