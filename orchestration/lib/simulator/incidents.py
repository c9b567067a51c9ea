"""Injected incidents: where they go, and the ground truth that records them.

Incidents are planned before anything is simulated, from their own random stream, one per
time slot so that their windows never overlap (each slot keeps a quiet margin on both sides).
The engine then asks the book what is going on at a given moment. The truth only ever leaves
the simulator through the truth file (and, for PostgreSQL, the ``sim_truth`` schema): nothing
in the source tables names an incident.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from orchestration.lib.simulator import catalogue as cat
from orchestration.lib.simulator.model import DAY, HOUR, JOBS_BY_NAME, MINUTE, SECOND, iso

KINDS = (
    "error_spike",
    "circuit_breaker_stuck",
    "null_tweet_id_burst",
    "job_failure_streak",
    "silent_shutdown",
    "cause_effect",
    "late_commit",
    "deleted_verification_failed",
)
INCIDENTS_PER_DAY = 0.8  # 24 over 30 days: three of each kind
# Jobs a streak is injected into: frequent enough for a streak of 6-12 to last a few hours, and
# not the posting jobs (a dead posting job would look like a shutdown, another kind).
STREAK_JOBS = (
    "reply_v2_fetch", "id_recovery_queue", "mega_viral_harvester", "truth_integrity",
    "metrics_scraper", "tweet_id_recovery", "reply_metrics_scraper",
)
LATE_WRITERS = ("posting", "reply_v2_fetch")
QUEUE_SUBJECT = "posting_queue"


@dataclass
class Incident:
    incident_id: str
    kind: str
    start: int
    end: int
    subject: str
    details: dict[str, Any]
    # engine bookkeeping, never written out
    state: dict[str, Any] = field(default_factory=dict)

    def covers(self, moment: int) -> bool:
        return self.start <= moment < self.end

    def record(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "kind": self.kind,
            "start": iso(self.start),
            "end": iso(self.end),
            "subject": self.subject,
            "details": self.details,
        }


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def plan_incidents(rng: random.Random, start: int, end: int,
                   per_day: float = INCIDENTS_PER_DAY) -> list[Incident]:
    """Spread incidents over [start, end): one per slot, kinds cycling through shuffled rounds
    (so len(KINDS) incidents, e.g. 8 in a week at per_day 8/7, are one of each kind)."""
    if per_day <= 0:
        raise ValueError("incidents per day must be > 0")
    count = max(1, round((end - start) / DAY * per_day))
    kinds: list[str] = []
    while len(kinds) < count:
        round_ = list(KINDS)
        rng.shuffle(round_)
        kinds.extend(round_)
    slot = (end - start) // count
    margin = min(2 * HOUR, slot // 6)
    warmup = min(6 * HOUR, slot // 3)  # give detectors some history before the first incident
    incidents: list[Incident] = []
    ordinals = {kind: rng.randrange(1000) for kind in KINDS}  # where each kind's subjects start
    for index, kind in enumerate(kinds[:count]):
        lo = start + index * slot + (warmup if index == 0 else margin)
        hi = start + (index + 1) * slot - margin
        incident = PLANNERS[kind](rng, lo, hi, ordinals[kind])
        ordinals[kind] += 1
        if incident is not None:
            incident.incident_id = f"inc-{len(incidents) + 1:03d}-{kind}"
            incidents.append(incident)
    return incidents


def _place(rng: random.Random, lo: int, hi: int, duration: int) -> int | None:
    if hi - lo < duration:
        return None
    return lo + rng.randrange(hi - lo - duration + 1)


def _nth(choices: tuple[str, ...], ordinal: int) -> str:
    """Successive incidents of a kind take successive subjects, so a month shows several."""
    return choices[ordinal % len(choices)]


def _error_spike(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    duration = rng.randint(60, 120) * MINUTE
    start = _place(rng, lo, hi, duration)
    if start is None:
        return None
    event_type = _nth(cat.SPIKE_TYPES, ordinal)
    baseline = cat.TRACKED_BY_TYPE[event_type.removeprefix("error_")].per_hour
    multiplier = round(rng.uniform(10, 20), 1)
    return Incident("", "error_spike", start, start + duration, event_type, {
        "event_type": event_type, "multiplier": multiplier, "baseline_per_hour": baseline,
        "injected_count": round(baseline * multiplier * duration / HOUR),
    })


def _circuit_breaker_stuck(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    duration = rng.randint(120, 360) * MINUTE
    start = _place(rng, lo, hi, duration)
    if start is None:
        return None
    return Incident("", "circuit_breaker_stuck", start, start + duration, QUEUE_SUBJECT, {
        "reason": cat.CIRCUIT_BREAKER, "breaker": "posting_executor",
        "open_minutes": duration // MINUTE,
    })


def _null_tweet_id_burst(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    first_hour = -(-(lo + 30 * MINUTE) // HOUR) * HOUR  # room before it for the injected decisions
    hours = (hi - HOUR - first_hour) // HOUR + 1
    if hours <= 0:
        return None
    start = first_hour + rng.randrange(hours) * HOUR
    incident = Incident("", "null_tweet_id_burst", start, start + HOUR, "error_null_tweet_id", {
        "hour": iso(start), "count": 0, "decision_ids": [],
    })
    incident.state["injected"] = rng.randint(8, 12)
    return incident


def _job_failure_streak(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    job = JOBS_BY_NAME[_nth(STREAK_JOBS, ordinal)]
    length = rng.randint(6, 12)
    duration = (length + 2) * job.interval_us
    start = _place(rng, lo + 2 * job.interval_us, hi, duration)
    if start is None:
        return None
    error_name, template, phase = rng.choice(cat.JOB_ERRORS)
    incident = Incident("", "job_failure_streak", start, start + duration, job.name, {
        "job_name": job.name, "streak_length": length, "phase": phase,
        "error": f"{error_name}: {cat.fill(template, rng)}",
    })
    incident.state.update(failed=0, recovered=False)
    return incident


def _silent_shutdown(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    duration = rng.randint(180, 480) * MINUTE
    start = _place(rng, lo, hi, duration)
    if start is None:
        return None
    return Incident("", "silent_shutdown", start, start + duration, QUEUE_SUBJECT, {
        "reason": _nth(cat.SHUTDOWN_REASONS, ordinal),
    })


def _cause_effect(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    cause_duration = rng.randint(45, 75) * MINUTE
    lag = rng.randint(50, 70) * MINUTE
    effect_duration = 60 * MINUTE
    start = _place(rng, lo, hi, lag + effect_duration)
    if start is None:
        return None
    incident = Incident("", "cause_effect", start, start + lag + effect_duration,
                        f"{cat.CAUSE_TYPE} -> POST_FAILED", {
                            "cause": cat.CAUSE_TYPE,
                            "effect": "POST_FAILED",
                            "effect_error_code": cat.PLAYWRIGHT_TIMEOUT.code,
                            "lag_minutes": lag // MINUTE,
                            "cause_start": iso(start), "cause_end": iso(start + cause_duration),
                            "effect_start": iso(start + lag),
                            "effect_end": iso(start + lag + effect_duration),
                            "cause_count": rng.randint(8, 15), "effect_count": 0,
                        })
    incident.state.update(cause_end=start + cause_duration, effect_start=start + lag)
    return incident


def _late_commit(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    window = rng.randint(10, 20) * MINUTE
    delay_seconds = rng.randint(120, 900)
    start = _place(rng, lo, hi, window + delay_seconds * SECOND)
    if start is None:
        return None
    writer = _nth(LATE_WRITERS, ordinal)
    incident = Incident("", "late_commit", start, start + window + delay_seconds * SECOND, writer, {
        "writer": writer, "delay_seconds": delay_seconds, "event_ids": [],
    })
    incident.state["window_end"] = start + window
    return incident


def _deleted_verification_failed(rng: random.Random, lo: int, hi: int, ordinal: int) -> Incident | None:
    window = 20 * MINUTE
    delete_after = rng.randint(5, 20) * MINUTE
    start = _place(rng, lo, hi, window + delete_after)
    if start is None:
        return None
    incident = Incident("", "deleted_verification_failed", start, start + window + delete_after,
                        "verification_failed", {
                            "event_ids": [], "deleted_after_seconds": delete_after // SECOND,
                        })
    incident.state.update(window_end=start + window, count=rng.randint(3, 8),
                          delete_after=delete_after)
    return incident


PLANNERS = {
    "error_spike": _error_spike,
    "circuit_breaker_stuck": _circuit_breaker_stuck,
    "null_tweet_id_burst": _null_tweet_id_burst,
    "job_failure_streak": _job_failure_streak,
    "silent_shutdown": _silent_shutdown,
    "cause_effect": _cause_effect,
    "late_commit": _late_commit,
    "deleted_verification_failed": _deleted_verification_failed,
}


# ---------------------------------------------------------------------------------------------
# Lookups for the engine
# ---------------------------------------------------------------------------------------------


class IncidentBook:
    def __init__(self, incidents: list[Incident]) -> None:
        self.incidents = incidents
        self.by_kind: dict[str, list[Incident]] = {kind: [] for kind in KINDS}
        for incident in incidents:
            self.by_kind[incident.kind].append(incident)
        self.late_writers = frozenset(i.subject for i in self.by_kind["late_commit"])

    def active(self, kind: str, moment: int) -> Incident | None:
        for incident in self.by_kind[kind]:
            if incident.covers(moment):
                return incident
        return None

    def queue_block(self, moment: int) -> str | None:
        """The reason the posting and reply queues are held by an incident, if any."""
        for kind in ("circuit_breaker_stuck", "silent_shutdown"):
            incident = self.active(kind, moment)
            if incident is not None:
                return incident.details["reason"]
        return None

    def effect_window(self, moment: int) -> Incident | None:
        for incident in self.by_kind["cause_effect"]:
            if incident.state["effect_start"] <= moment < incident.end:
                return incident
        return None

    def cause_windows(self) -> list[tuple[int, int]]:
        return [(i.start, i.state["cause_end"]) for i in self.by_kind["cause_effect"]]

    def late_commit(self, writer: str, moment: int) -> Incident | None:
        for incident in self.by_kind["late_commit"]:
            if incident.subject == writer and incident.start <= moment < incident.state["window_end"]:
                return incident
        return None

    def streak_outcome(self, job_name: str, moment: int, interval: int) -> tuple[str, Incident] | None:
        """('fail' | 'succeed', incident) when an injected streak dictates this run, else None."""
        for incident in self.by_kind["job_failure_streak"]:
            if incident.subject != job_name:
                continue
            state = incident.state
            if incident.start - 3 * interval // 2 <= moment < incident.start:
                return "succeed", incident  # a clean run just before: the streak is exactly its length
            if moment < incident.start or state["recovered"]:
                continue
            if state["failed"] == 0:
                incident.start = moment
            if state["failed"] < incident.details["streak_length"]:
                state["failed"] += 1
                return "fail", incident
            state["recovered"] = True
            incident.end = moment
            return "succeed", incident
        return None

    def records(self) -> list[dict[str, Any]]:
        return [incident.record() for incident in sorted(self.incidents, key=lambda i: i.start)]
