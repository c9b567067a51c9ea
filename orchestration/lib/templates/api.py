"""Incremental template mining for the warehouse: feed new events, get assignments and template rows.

Typical use from an asset (state in a JSON file next to the warehouse, or in a table via to_dict/from_dict):

    miner = TemplateMiner.load_or_new(STATE_PATH)
    result = mine_templates(new_events, miner)   # only events not mined before: counts are cumulative
    miner.save(STATE_PATH)
    upsert(result.templates); append(result.assignments); upsert(alias_rows(miner))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .mask import JOB_PLACEHOLDER
from .miner import Cluster, TemplateMiner

# Payload keys holding error text, in the order we prefer them (source-schema.md: system_events).
ERROR_TEXT_KEYS: tuple[str, ...] = (
    "error_message",
    "error",
    "last_error",
    "original_error",
    "primary_error",
    "permit_error",
)

Message = tuple[Any, str | None, str | None, datetime | str | None, str | None]  # event_id, type, job, at, text


@dataclass(frozen=True)
class TemplateRow:
    """One template as the warehouse stores it; statistics are cumulative over every run sharing the state."""

    template_id: str
    template: str
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    n_events: int
    event_types: tuple[str, ...]
    job_names: tuple[str, ...]
    example_message: str | None
    is_new: bool  # first seen in this run


class MiningResult(NamedTuple):
    assignments: list[tuple[Any, str]]  # (event_id, template_id), ids resolved as of the end of this run
    templates: list[TemplateRow]  # templates touched in this run


def error_text(message: str | None, payload: Mapping[str, Any] | None) -> str | None:
    """The text to mine for one event: its `message`, else the first error text found in its payload."""
    if message and message.strip():
        return message
    for key in ERROR_TEXT_KEYS:
        value = (payload or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _as_utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)  # naive timestamps are UTC in this warehouse


def _mask_job(text: str, job_name: str | None) -> str:
    # The job name is a known variable of the event: without this, "Job posting failed ..." and
    # "Job learn failed ..." would be two templates, and the template could not span jobs.
    if not job_name:
        return text
    return re.sub(rf"(?<![\w-]){re.escape(job_name)}(?![\w-])", JOB_PLACEHOLDER, text)


def _record(cluster: Cluster, event_type: str | None, job_name: str | None, at: datetime | None, text: str) -> None:
    if at is not None:
        cluster.first_seen_at = at if cluster.first_seen_at is None else min(cluster.first_seen_at, at)
        cluster.last_seen_at = at if cluster.last_seen_at is None else max(cluster.last_seen_at, at)
    if event_type:
        cluster.event_types.add(event_type)
    if job_name:
        cluster.job_names.add(job_name)
    if cluster.example_message is None:
        cluster.example_message = text


def _row(cluster: Cluster, is_new: bool) -> TemplateRow:
    return TemplateRow(
        template_id=cluster.template_id,
        template=cluster.template,
        first_seen_at=cluster.first_seen_at,
        last_seen_at=cluster.last_seen_at,
        n_events=cluster.size,
        event_types=tuple(sorted(cluster.event_types)),
        job_names=tuple(sorted(cluster.job_names)),
        example_message=cluster.example_message,
        is_new=is_new,
    )


class MiningRun:
    """One run over events fed in chunks (a large history never sits in memory at once).

    ``feed`` returns each chunk's assignments with the template ids as assigned then; templates
    may generalise (or merge) later in the run, so ``resolve`` maps those ids to the live ones at
    the end of the run, and ``templates`` reports the templates the whole run touched."""

    def __init__(self, state: TemplateMiner) -> None:
        self.state = state
        self.created: set[str] = set()
        self.touched: set[str] = set()
        self.assigned = 0

    def feed(self, messages: Iterable[Message]) -> list[tuple[Any, str]]:
        raw: list[tuple[Any, str]] = []
        state = self.state
        for event_id, event_type, job_name, created_at, text in messages:
            if not text or not text.strip():
                continue
            result = state.add(_mask_job(text, job_name))
            _record(result.cluster, event_type, job_name, _as_utc(created_at), text)
            raw.append((event_id, result.template_id))
            self.touched.add(result.template_id)
            if result.created:
                self.created.add(result.template_id)
        self.assigned += len(raw)
        return raw

    def resolve(self, template_id: str) -> str:
        return self.state.resolve(template_id)

    def templates(self) -> list[TemplateRow]:
        new_ids = {self.state.resolve(tid) for tid in self.created}
        live = sorted({self.state.resolve(tid) for tid in self.touched})
        return [_row(self.state.clusters[tid], tid in new_ids) for tid in live]


def mine_templates(messages: Iterable[Message], state: TemplateMiner) -> MiningResult:
    """Assign each (event_id, event_type, job_name, created_at, text) to a template, updating `state`.

    Events without text are skipped (no assignment). Feed each event once: counts accumulate in the state.
    """
    run = MiningRun(state)
    raw = run.feed(messages)
    # Templates may have generalised (or merged) later in the run: report everything under its live id.
    assignments = [(event_id, state.resolve(tid)) for event_id, tid in raw]
    return MiningResult(assignments, run.templates())


def alias_rows(state: TemplateMiner) -> list[tuple[str, str]]:
    """(old_template_id, live_template_id) for every id that generalised away: keeps old assignments joinable."""
    return [(old, state.resolve(old)) for old in sorted(state.aliases)]
