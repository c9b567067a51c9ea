"""The timeline engine: a discrete-event loop over the bot's life.

Everything that happens is an action on a time-ordered heap (job runs, background error
occurrences, incident steps). Actions emit rows; the engine hands them out in chunks of
simulated time so memory stays bounded. High-frequency telemetry (daemon ticks, health checks),
which depends on nothing else, is produced per chunk on a fast path.

Determinism: one seeded stream drives the actions, in heap order; telemetry, incident planning,
deploys and the bot's habits (habits.py) have their own streams. Nothing depends on what is
written where.
"""

from __future__ import annotations

import heapq
import json
import random
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from orchestration.lib.simulator import background, jobs
from orchestration.lib.simulator import catalogue as cat
from orchestration.lib.simulator.habits import Habits
from orchestration.lib.simulator.incidents import INCIDENTS_PER_DAY, IncidentBook, plan_incidents
from orchestration.lib.simulator.model import (
    DAY,
    HOUR,
    JOBS,
    NATURAL_STREAK_CAP,
    SECOND,
    AttemptRow,
    Decision,
    EventRow,
    JobSpec,
    JobState,
    Outcome,
    ScraperRunRow,
    iso,
    uuid4_from,
)

DAEMON_TICK_SECONDS = 20.0
HEALTH_CHECK_SECONDS = 60.0
ERROR_SPIKE_ALERT_THRESHOLD = 10  # per error type per hour: the checklist's "error spikes"
ROWS_PER_CHUNK = 200_000
EVENTS_PER_DAY_AT_SCALE_1 = 14_000  # only used to size chunks

_to_json = json.JSONEncoder().encode


@dataclass
class Chunk:
    """Rows produced for one stretch of simulated time."""

    events: list[EventRow] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    scraper_runs: list[ScraperRunRow] = field(default_factory=list)


@dataclass(frozen=True)
class Deploy:
    at: int
    git_sha: str
    app_version: str
    pid: int


class Timeline:
    def __init__(self, *, seed: int, start: int, end: int, scale: float = 1.0,
                 incidents: bool = True, incident_span: tuple[int, int] | None = None,
                 incidents_per_day: float = INCIDENTS_PER_DAY, bot_habits: bool = True) -> None:
        if end <= start:
            raise ValueError("the simulated period is empty: days must be > 0")
        span_start, span_end = incident_span or (start, end)
        if not start <= span_start < span_end <= end:
            raise ValueError("the incident span must be a non-empty part of the simulated period")
        if scale <= 0:
            raise ValueError("scale must be > 0")
        self.seed = seed
        self.start = start
        self.end = end
        self.scale = scale
        self.rng = random.Random(seed)
        self.telemetry_rng = random.Random(f"{seed}:telemetry")
        planned = plan_incidents(random.Random(f"{seed}:incidents"), span_start, span_end,
                                 incidents_per_day) if incidents else []
        self.book = IncidentBook(planned)
        self.deploys = self._plan_deploys(random.Random(f"{seed}:deploys"))
        self.habits = Habits(seed=seed, start=start, end=end, enabled=bot_habits)
        self.deploy_times = [d.at for d in self.deploys]

        self.out = Chunk()
        self.now = start
        self.writer: str | None = None  # the job whose transaction is emitting (late commits)
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0

        self.jobs: dict[str, JobState] = {spec.name: JobState(spec) for spec in JOBS}
        self.decisions: list[Decision] = []
        self.content_queue: list[Decision] = []
        self.reply_queue: list[Decision] = []
        self.recovery_pending: list[Decision] = []
        self.content_posts: deque[int] = deque()  # successful post times, for the safeguards
        self.reply_posts: deque[int] = deque()
        self.breaker_open_until = 0
        self.rate_limited_until = 0
        self.deletions: list[tuple[int, str]] = []  # (deleted_at, event id)
        self._error_times: dict[str, deque[int]] = {}
        self._spike_alert_quiet_until: dict[str, int] = {}
        self.scraper_run_id = 0
        self.pending_posts: dict[str, tuple[str, int]] = {}  # posted, DB write failed: (tweet_id, at)

        for state in self.jobs.values():
            self.schedule(start + self.rng.randrange(state.spec.interval_us), self._run_job, state)
        background.schedule_all(self)

    # -- the loop ------------------------------------------------------------------------------

    def schedule(self, at: int, action: Callable[..., None], *args: Any) -> None:
        if at < self.end:
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, action, args))

    def chunks(self) -> Iterator[Chunk]:
        """Run the whole timeline, yielding the rows of each stretch of simulated time."""
        expected_per_day = EVENTS_PER_DAY_AT_SCALE_1 * max(1.0, self.scale)
        span = max(HOUR, min(DAY, int(DAY * ROWS_PER_CHUNK / expected_per_day) // HOUR * HOUR))
        lo = self.start
        while lo < self.end:
            hi = min(lo + span, self.end)
            while self._heap and self._heap[0][0] < hi:
                at, _, action, args = heapq.heappop(self._heap)
                self.now = at
                action(*args)
            self._telemetry(lo, hi)
            self.out.events.extend(self.habits.events_between(lo, hi))
            chunk, self.out = self.out, Chunk()
            yield chunk
            lo = hi
        self.habits.after_run(self.decisions)

    # -- emitting ------------------------------------------------------------------------------

    def new_id(self) -> str:
        return uuid4_from(self.rng)

    def emit(self, at: int, event_type: str, severity: str | None,
             payload: dict[str, Any] | str | None, message: str | None, *,
             in_metadata: bool = False, component: str | None = None) -> str:
        """Append one system_events row (payload as a dict, or already as JSON text); returns its id."""
        event_id = uuid4_from(self.rng)
        text = payload if payload is None or isinstance(payload, str) else _to_json(payload)
        commit_at = at
        if self.writer is not None and self.writer in self.book.late_writers:
            late = self.book.late_commit(self.writer, at)
            if late is not None:
                commit_at = at + late.details["delay_seconds"] * SECOND
                late.details["event_ids"].append(event_id)
        if at >= self.habits.next_backdate_due and self.writer is not None and commit_at == at:
            commit_at = self.habits.commit_late(event_id, event_type, self.writer, at)
        self.out.events.append((
            event_id, event_type, None if in_metadata else text, text if in_metadata else None,
            severity, message, component, at, at, commit_at,
        ))
        return event_id

    def track_error(self, at: int, error_type: str, message: str, *, component: str,
                    error_name: str = "Error", decision_id: str | None = None,
                    tweet_id: str | None = None, retry_count: int = 0,
                    severity: str | None = "error") -> str:
        """An ErrorTracker event (``error_<type>``), and the tracker's own spike alert."""
        event_type = f"error_{error_type}"
        payload = {
            "component": component,
            "error_type": error_type,
            "error_message": message,
            "context": {
                "decision_id": decision_id,
                "retry_count": retry_count,
                "tweet_id": tweet_id,
                "stack": cat.stack_trace(self.rng, error_name, message),
            },
        }
        event_id = self.emit(at, event_type, severity, payload, cat.TRACKED_EVENT_MESSAGE.format(
            component=component, error_type=error_type, message=message[:160]))
        self._observe_error(at, event_type)
        return event_id

    def _observe_error(self, at: int, event_type: str) -> None:
        times = self._error_times.setdefault(event_type, deque())
        times.append(at)
        while times and times[0] <= at - HOUR:
            times.popleft()
        quiet_until = self._spike_alert_quiet_until.get(event_type, 0)
        if len(times) >= ERROR_SPIKE_ALERT_THRESHOLD and at >= quiet_until:
            self._spike_alert_quiet_until[event_type] = at + HOUR
            self.emit(at + SECOND, "error_spike_alert", "high", {
                "error_type": event_type, "count_last_hour": len(times),
                "threshold": ERROR_SPIKE_ALERT_THRESHOLD, "window_minutes": 60,
            }, f"Error spike: {len(times)} {event_type} in the last 60 minutes (threshold "
               f"{ERROR_SPIKE_ALERT_THRESHOLD})")

    def critical_alert(self, at: int, alert_type: str, source_event: str, **details: Any) -> None:
        payload = {"alert_type": alert_type, "source_event": source_event, **details}
        self.emit(at, "critical_error_alert", "critical", payload,
                  f"CRITICAL: {alert_type} ({source_event})")

    # -- jobs ----------------------------------------------------------------------------------

    def _run_job(self, state: JobState) -> None:
        spec, at, rng = state.spec, self.now, self.rng
        next_at = at + spec.interval_us + rng.randint(-spec.jitter_s, spec.jitter_s) * SECOND
        self.schedule(next_at, self._run_job, state)
        self.writer = spec.name
        # the two timer events of every run are built as text: they are a quarter of all rows
        self.emit(at, "timer_fired", None,
                  f'{{"job_name": "{spec.name}", "fired_at": "{iso(at)}", '
                  f'"interval_ms": {spec.interval_s * 1000}}}',
                  f"Timer fired for job {spec.name}")
        if state.busy_until > at:  # the previous run still holds the job: the real manager skips
            self.emit(at + 1000, "job_run_skipped_overlap", "info",
                      {"job_name": spec.name, "running_since": iso(state.started_at)},
                      f"Job {spec.name} still running; skipping this tick")
            self.writer = None
            return
        outcome = self._draw_outcome(state, at)
        duration = self._draw_duration(spec, outcome)
        state.status, state.started_at = "running", at
        state.record(at)
        jobs.BEHAVIOURS[spec.name](self, spec, at, outcome, duration)
        finish = at + duration
        self._finish_run(state, finish, outcome, duration)
        state.busy_until = finish
        self.emit(finish + 2000, "timer_scheduled", None,
                  f'{{"job_name": "{spec.name}", "next_run_at": "{iso(next_at)}", '
                  f'"interval_ms": {spec.interval_s * 1000}}}',
                  f"Scheduled {spec.name} in {(next_at - finish) // SECOND}s")
        self.writer = None

    def _draw_outcome(self, state: JobState, at: int) -> Outcome:
        spec, rng = state.spec, self.rng
        forced = self.book.streak_outcome(spec.name, at, spec.interval_us)
        if forced is not None and forced[0] == "fail":
            details = forced[1].details
            name, _, message = details["error"].partition(": ")
            return Outcome("failure", error=message, error_name=name, phase=details["phase"],
                           forced=True)
        if forced is not None or state.consecutive_failures >= NATURAL_STREAK_CAP:
            return Outcome("success")
        draw = rng.random()
        if draw < spec.failure_rate:
            name, template, phase = rng.choice(cat.JOB_ERRORS)
            return Outcome("failure", error=cat.fill(template, rng), error_name=name, phase=phase)
        if draw < spec.failure_rate + spec.skip_rate:
            return Outcome("skipped", skip_reason=cat.fill(rng.choice(cat.SKIP_REASONS), rng))
        return Outcome("success")

    def _draw_duration(self, spec: JobSpec, outcome: Outcome) -> int:
        rng = self.rng
        seconds = rng.uniform(*spec.duration_s)
        if outcome.status == "failure":
            seconds *= rng.uniform(0.2, 1.0)
        elif outcome.status == "skipped":
            seconds = rng.uniform(0.05, 0.5)
        elif rng.random() < 0.002:  # a hung run, which the job watchdog will notice
            seconds = rng.uniform(12, 40) * 60
        return int(seconds * SECOND)

    def _finish_run(self, state: JobState, finish: int, outcome: Outcome, duration: int) -> None:
        spec = state.spec
        if outcome.status == "success":
            state.last_success, state.status = finish, "success"
            state.consecutive_failures, state.last_error = 0, None
        elif outcome.status == "skipped":
            state.status, state.last_error = "skipped", (outcome.skip_reason or "skipped")[:500]
        else:
            error_text = f"{outcome.error_name}: {outcome.error}"
            state.last_failure, state.status = finish, spec.failure_word
            state.last_error = error_text[:500]
            state.consecutive_failures += 1
            self._emit_job_failure(state, finish, outcome, duration)
        state.record(finish)

    def _emit_job_failure(self, state: JobState, at: int, outcome: Outcome, duration: int) -> None:
        spec, rng = state.spec, self.rng
        error_text = f"{outcome.error_name}: {outcome.error}"
        self.emit(at, f"{spec.name}_job_execution_failed", "error", {
            "job_name": spec.name,
            "phase": outcome.phase,
            "error": outcome.error,
            "stack": cat.stack_trace(rng, outcome.error_name or "Error", outcome.error or ""),
            "duration_ms": duration // 1000,
            "consecutive_failures": state.consecutive_failures,
        }, cat.JOB_FAILURE_MESSAGE.format(job=spec.name, phase=outcome.phase, ms=duration // 1000,
                                          error=error_text[:200]))
        if spec.critical and state.consecutive_failures >= 3:
            self.emit(at + 1000, f"{spec.name}_consecutive_failures", "critical", {
                "job_name": spec.name,
                "consecutive_failures": state.consecutive_failures,
                "threshold": 3,
                "last_error": error_text[:300],
                "last_success": iso(state.last_success),
            }, f"Critical job {spec.name} has failed {state.consecutive_failures} times in a row")
        if state.consecutive_failures == 5:
            self.critical_alert(at + 2000, "consecutive_failures", f"{spec.name}_job_execution_failed",
                                job_name=spec.name, count=5)

    # -- decisions -----------------------------------------------------------------------------

    def new_decision(self, at: int, decision_type: str, scheduled_at: int, *,
                     target_tweet_id: str | None = None, pipeline_source: str = "planJob") -> Decision:
        rng = self.rng
        generator = rng.choice(cat.GENERATORS)
        topic = rng.choice(cat.TOPICS)
        thread_length = rng.randint(3, 7) if decision_type == "thread" else 1
        decision = Decision(
            seq=len(self.decisions) + 1,
            decision_id=self.new_id(),
            decision_type=decision_type,
            created_at=at,
            content=_content(rng, decision_type, topic, thread_length),
            generator_name=generator,
            topic=topic,
            predicted_er=round(rng.uniform(0.004, 0.06), 5),
            quality_score=round(rng.uniform(0.55, 0.98), 3),
            target_tweet_id=target_tweet_id,
            features={
                "generator": generator, "hook_type": rng.choice(cat.HOOK_TYPES),
                "pipeline_source": pipeline_source, "thread_length": thread_length,
                "model": rng.choice(("gpt-4o-mini", "gpt-4o")),
            },
            is_test_post=rng.random() < 0.01,
            thread_length=thread_length,
            every_change_sets_updated_at=not self.habits.enabled,
        )
        decision.change(at, "insert", status="queued", scheduled_at=scheduled_at, retry_count=0)
        self.decisions.append(decision)
        return decision

    # -- telemetry fast path -------------------------------------------------------------------

    def deploy_at(self, moment: int) -> Deploy:
        return self.deploys[max(0, bisect_right(self.deploy_times, moment) - 1)]

    def _plan_deploys(self, rng: random.Random) -> list[Deploy]:
        deploys, at, minor = [], self.start - rng.randint(1, 48) * HOUR, 40
        while at < self.end:
            minor += 1
            deploys.append(Deploy(at, f"{rng.getrandbits(40):010x}", f"2.{minor}.{rng.randint(0, 9)}",
                                  rng.randint(20, 900)))
            at += rng.randint(36, 120) * HOUR
        return deploys

    def _telemetry(self, lo: int, hi: int) -> None:
        """Daemon ticks and browser-pool health checks, built as text for speed."""
        rng = self.telemetry_rng
        causes = [w for w in self.book.cause_windows() if w[0] < hi and w[1] > lo]
        events = self.out.events
        step = int(DAEMON_TICK_SECONDS * SECOND / self.scale)
        for k in range(-(-(lo - self.start) // step), -(-(hi - self.start) // step)):
            at = self.start + k * step + rng.randrange(step // 4 + 1)
            deploy = self.deploy_at(at)
            queue, active = rng.randrange(4), rng.randrange(5)
            payload = (f'{{"tick": {k}, "uptime_s": {(at - deploy.at) // SECOND}, "queue_depth": {queue}, '
                       f'"active_jobs": {active}, "git_sha": "{deploy.git_sha}", '
                       f'"app_version": "{deploy.app_version}", "pid": {deploy.pid}}}')
            events.append((uuid4_from(rng), "EXECUTOR_DAEMON_TICK", payload, None, "info",
                           f"Executor daemon tick {k}: {active} active jobs, queue depth {queue}", None,
                           at, at, at))
        step = int(HEALTH_CHECK_SECONDS * SECOND / self.scale)
        for k in range(-(-(lo - self.start) // step), -(-(hi - self.start) // step)):
            at = self.start + k * step + rng.randrange(step // 4 + 1)
            degraded = any(a <= at < b for a, b in causes)
            queue = rng.randint(6, 14) if degraded else rng.choice((0, 0, 0, 0, 1, 1, 2))
            active = 4 if degraded else rng.randint(0, 4)
            rss = rng.randint(1250, 1450) if degraded else rng.randint(620, 1180)
            payload = (f'{{"browser_pool_queue_len": {queue}, "browser_pool_active": {active}, '
                       f'"browser_pool_max_contexts": 4, "rss_mb": {rss}, '
                       f'"heap_used_mb": {rss * 6 // 10}}}')
            if degraded:
                events.append((uuid4_from(rng), "EXECUTOR_HEALTH_DEGRADED", payload, None, "warning",
                               f"Browser pool saturated: {active}/4 active, {queue} waiting", None,
                               at, at, at))
            else:
                events.append((uuid4_from(rng), "EXECUTOR_HEALTH_OK", payload, None, "info",
                               f"Executor healthy: pool {active}/4 active, queue {queue}, rss {rss}MB",
                               None, at, at, at))


def _content(rng: random.Random, decision_type: str, topic: str, parts: int) -> str:
    opener = rng.choice((
        f"Most people get {topic} wrong.", f"A thread on {topic} nobody asked for:",
        f"New data on {topic} is surprising.", f"Why {topic} matters more than you think.",
    ))
    if decision_type == "reply":
        return f"Great point. On {topic}: {rng.randint(2, 9)} studies suggest the effect is real but small."
    if decision_type == "thread":
        return opener + "".join(f"\n\n{i + 1}/ point {i + 1} about {topic}" for i in range(parts))
    return f"{opener} {rng.randint(2, 90)}% of the effect comes from one habit."
