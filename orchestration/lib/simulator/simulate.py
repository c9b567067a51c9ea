"""``simulate()``: run the timeline and write the part that falls in the write window.

The whole timeline [end - days, end) is always generated, so rows are identical whatever is
written. A write window [write_from, write_to) selects rows by the moment they become visible
(created_at, or for late-committed rows created_at + delay), upserts heartbeats and decisions to
their state as of write_to, and applies the deletions (events, decisions) that happened in the
window. Writing [a, b) then [b, c) therefore leaves exactly what one write of [a, c) would have.

With ``bot_habits`` (the default) the bot's writing habits are on (habits.py); the payload
column type of the source decides which poison payloads can be stored at all.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa

from orchestration.lib.settings import Location
from orchestration.lib.simulator.generate import Chunk, Timeline
from orchestration.lib.simulator.incidents import INCIDENTS_PER_DAY
from orchestration.lib.simulator.model import (
    COMMIT_AT,
    DAY,
    Decision,
    JobState,
    SimulationSummary,
    from_us,
    to_us,
)
from orchestration.lib.simulator.writers import (
    DECISIONS,
    JOB_HEARTBEATS,
    METRICS_SCRAPER_RUNS,
    POSTING_ATTEMPTS,
    SYSTEM_EVENTS,
    InsertPipeline,
    SourceWriter,
    TableShape,
    default_truth_path,
    open_writer,
    write_truth_file,
    write_truth_table,
)
from orchestration.lib.source.schema import SOURCE_TABLES, create_source_schema, payload_column_type

ROWS_PER_BATCH = 200_000


def default_end() -> datetime:
    """The current time truncated to the hour (UTC)."""
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def simulate(
    target: Location,
    *,
    days: float,
    seed: int,
    end: datetime | None = None,
    truth_path: Path | None = None,
    write_from: datetime | None = None,
    write_to: datetime | None = None,
    reset: bool = True,
    scale: float = 1.0,
    incidents: bool = True,
    incidents_from: datetime | None = None,
    incidents_to: datetime | None = None,
    incidents_per_day: float = INCIDENTS_PER_DAY,
    bot_habits: bool = True,
    payload_type: str = "jsonb",
) -> SimulationSummary:
    """Simulate ``days`` of the bot's life ending at ``end`` and write it into ``target``.

    Incidents are planned over [incidents_from, incidents_to) (default: the whole period) at
    ``incidents_per_day``; e.g. one week at 8/7 a day holds one incident of each kind (a bad
    week) and leaves the rest of the period clean. ``bot_habits=False`` turns off the habits
    that break naive extraction (habits.py). ``payload_type`` ("jsonb", as the bot's migrations
    leave it, or "json") is the type of a new PostgreSQL source's payload columns."""
    began = time.perf_counter()
    end = default_end() if end is None else end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    end_us = to_us(end)
    start_us = end_us - round(days * DAY)
    lo = None if write_from is None else to_us(write_from)
    hi = end_us if write_to is None else min(to_us(write_to), end_us)
    span = (start_us if incidents_from is None else to_us(incidents_from),
            end_us if incidents_to is None else to_us(incidents_to))
    timeline = Timeline(seed=seed, start=start_us, end=end_us, scale=scale, incidents=incidents,
                        incident_span=span, incidents_per_day=incidents_per_day, bot_habits=bot_habits)

    create_source_schema(target, drop_existing=reset, payload_type=payload_type)
    column_type = payload_column_type(target)
    refused = timeline.habits.refused_ids(column_type)
    rows = dict.fromkeys(SOURCE_TABLES, 0)
    writer = open_writer(target)
    try:
        if reset:
            writer.defer_indexes(SYSTEM_EVENTS)
        _load_chunks(writer, timeline, lo, hi, rows, refused)
        deletions = timeline.habits.decision_deletions
        rows[DECISIONS.name] = _upsert_decisions(writer, timeline.decisions, lo, hi, deletions)
        rows[JOB_HEARTBEATS.name] = _upsert_heartbeats(writer, timeline.jobs.values(), hi)
        deleted = writer.delete_events([i for at, i in timeline.deletions if _within(at, lo, hi)])
        deleted_decisions = writer.delete_decisions([d for d, (at, _) in deletions.items() if _within(at, lo, hi)])
        writer.finish_load()
    except BaseException:
        writer.abort()
        raise
    writer.close()

    records = timeline.book.records()
    habits = timeline.habits.records(column_type)
    truth = truth_path or default_truth_path(target)
    write_truth_file(truth, records + habits)
    if target.is_postgres:
        write_truth_table(target, records + habits, reset=reset)
    return SimulationSummary(
        start=from_us(start_us), end=end, seed=seed, rows=rows, deleted_events=deleted,
        incidents=records, truth_path=truth, seconds=time.perf_counter() - began, habits=habits,
        deleted_decisions=deleted_decisions,
    )


def _within(moment: int, lo: int | None, hi: int) -> bool:
    return (lo is None or moment >= lo) and moment < hi


def _select(rows: list[Any], time_index: int, lo: int | None, hi: int) -> list[Any]:
    """The rows whose time (at ``time_index``) falls in [lo, hi)."""
    if lo is None:
        return [r for r in rows if r[time_index] < hi]
    return [r for r in rows if lo <= r[time_index] < hi]


def _load_chunks(writer: SourceWriter, timeline: Timeline, lo: int | None, hi: int,
                 rows: dict[str, int], refused: set[str]) -> None:
    """Append the chunks' rows that fall in the window, loading in the background; events whose
    payload the source's column refuses are left out (the bot's insert of them fails)."""
    pipeline = InsertPipeline()
    try:
        for chunk in timeline.chunks():
            if refused:
                chunk.events = [e for e in chunk.events if e[0] not in refused]
            for shape, table in _chunk_tables(chunk, lo, hi):
                pipeline.submit(partial(writer.insert, shape, table))
                rows[shape.name] += table.num_rows
            pipeline.submit(writer.end_batch)
    finally:
        pipeline.join()


def _chunk_tables(chunk: Chunk, lo: int | None, hi: int) -> Iterator[tuple[TableShape, pa.Table]]:
    events = _select(chunk.events, COMMIT_AT, lo, hi)
    attempts = _select(chunk.attempts, -1, lo, hi)
    runs = _select(chunk.scraper_runs, 1, lo, hi)
    for shape, batch in ((SYSTEM_EVENTS, events), (POSTING_ATTEMPTS, attempts),
                         (METRICS_SCRAPER_RUNS, runs)):
        for offset in range(0, len(batch), ROWS_PER_BATCH):
            yield shape, shape.to_arrow(batch[offset:offset + ROWS_PER_BATCH])


def _upsert_heartbeats(writer: SourceWriter, jobs: Iterable[JobState], hi: int) -> int:
    """Each job's row as it stood at the end of the window (the table has no history)."""
    rows = []
    for state in jobs:
        snapshot = state.as_of(hi)
        if snapshot is not None:
            updated, success, failure, status, error, consecutive = snapshot
            rows.append((state.spec.name, success, failure, status, error, consecutive, updated))
    writer.upsert(JOB_HEARTBEATS, JOB_HEARTBEATS.to_arrow(rows))
    return len(rows)


def _upsert_decisions(writer: SourceWriter, decisions: list[Decision], lo: int | None, hi: int,
                      deletions: dict[str, tuple[int, str]]) -> int:
    """Decisions changed in the window (updated_at moved or not: rows change in place), at their
    state as of the window's end; not those deleted by then (the bot's later updates of a
    deleted row change nothing)."""
    rows = []
    for decision in decisions:
        if decision.created_at >= hi or not decision.touched_in(lo, hi):
            continue
        deleted = deletions.get(decision.decision_id)
        if deleted is not None and deleted[0] < hi:
            continue
        state = decision.state_as_of(hi)
        assert state is not None
        features = dict(decision.features, retry_count=state["retry_count"])
        rows.append((
            decision.seq, decision.decision_id, decision.decision_type, state["status"],
            decision.content, decision.generator_name, decision.topic, decision.predicted_er,
            decision.quality_score, state["scheduled_at"], state["posted_at"], state["tweet_id"],
            state["thread_tweet_ids"], decision.target_tweet_id, state["skip_reason"],
            state["error_message"], json.dumps(features), decision.is_test_post,
            decision.created_at, state["updated_at"],
        ))
    for offset in range(0, len(rows), ROWS_PER_BATCH):
        writer.upsert(DECISIONS, DECISIONS.to_arrow(rows[offset:offset + ROWS_PER_BATCH]))
    return len(rows)


def end_from_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

