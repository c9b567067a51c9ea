"""Things that happen outside the scheduled jobs: ErrorTracker noise, memory cleanups, deadlock
retries, permit denials, short circuit-breaker openings, deploys — and the incident steps.

Random background streams are Poisson processes with daily seasonality (thinning: draw at the
peak rate, keep an occurrence with probability activity/peak).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from orchestration.lib.simulator import catalogue as cat
from orchestration.lib.simulator.incidents import Incident
from orchestration.lib.simulator.jobs import emit_verification_failed
from orchestration.lib.simulator.model import DAY, HOUR, MINUTE, SECOND, activity

if TYPE_CHECKING:
    from orchestration.lib.simulator.generate import Timeline

PEAK_ACTIVITY = 1.35


def schedule_all(tl: Timeline) -> None:
    for error in cat.TRACKED_ERRORS:
        _poisson(tl, error.per_hour / HOUR, _tracked_error, error)
    _poisson(tl, 1 / (38 * MINUTE), _memory_cleanup, seasonal=False)
    _poisson(tl, 1.5 / DAY, _deadlock_retry)
    _poisson(tl, 3 / DAY, _permit_denied)
    _poisson(tl, 0.6 / DAY, _breaker_blip)
    for deploy in tl.deploys:
        if deploy.at >= tl.start:
            tl.schedule(deploy.at, _daemon_started, tl)
    for incident in tl.book.incidents:
        INCIDENT_STEPS[incident.kind](tl, incident)


def _poisson(tl: Timeline, per_us: float, action: Callable[..., None], *args: object,
             seasonal: bool = True) -> None:
    """Run ``action(tl, *args)`` at the times of a Poisson process of rate ``per_us``."""
    peak = per_us * (PEAK_ACTIVITY if seasonal else 1.0)

    def occur() -> None:
        if not seasonal or tl.rng.random() < activity(tl.now) / PEAK_ACTIVITY:
            action(tl, *args)
        tl.schedule(tl.now + int(tl.rng.expovariate(peak)) + 1, occur)

    tl.schedule(tl.start + int(tl.rng.expovariate(peak)) + 1, occur)


def _tracked_error(tl: Timeline, error: cat.TrackedError) -> None:
    rng = tl.rng
    latest = tl.decisions[-1] if tl.decisions else None
    message = cat.fill(error.message, rng, decision=latest.decision_id if latest else tl.new_id())
    in_context = latest if latest is not None and rng.random() < 0.5 else None  # not every caller knows
    tl.track_error(tl.now, error.error_type, message, component=error.component,
                   error_name=error.error_name, severity=error.severity,
                   decision_id=in_context.decision_id if in_context else None,
                   retry_count=in_context.retry_count if in_context else 0)
    if error.severity == "critical":
        tl.critical_alert(tl.now + SECOND, "critical_error", f"error_{error.error_type}",
                          component=error.component)


def _memory_cleanup(tl: Timeline) -> None:
    rng = tl.rng
    rss = rng.randint(700, 1450)
    freed = rng.randint(20, 400)
    # this writer keeps its payload in the metadata column
    tl.emit(tl.now, "MEMORY_WATCHDOG_CLEANUP", "warning" if rss > 1300 else "notice", {
        "rss_mb": rss, "heap_used_mb": rss * 6 // 10, "freed_mb": freed,
        "contexts_closed": rng.randint(0, 3),
    }, f"Memory watchdog: rss {rss}MB, freed {freed}MB", in_metadata=True)


def _deadlock_retry(tl: Timeline) -> None:
    rng = tl.rng
    table = rng.choice(("content_metadata", "job_heartbeats", "posting_attempts"))
    # a path that passes the Postgres error class as the severity: the 'deadlock' quirk
    tl.emit(tl.now, "db_write_retry", "deadlock", {
        "operation": "update", "table": table, "attempt": 2, "error": "deadlock detected",
        "pg_code": "40P01",
    }, f"deadlock detected while updating {table}; retrying (attempt 2/3)")


def _permit_denied(tl: Timeline) -> None:
    rng = tl.rng
    permit_id = tl.new_id()
    status, error = rng.choice((("EXPIRED", "permit expired after 300000ms before use"),
                                ("REJECTED", "permit rejected: hourly budget exhausted (3/3)")))
    tl.emit(tl.now, "posting_permit_denied", "warning", {
        "permit_id": permit_id, "status": status, "permit_error": error,
    }, f"Posting permit {permit_id} {status.lower()}: {error}")


def _breaker_blip(tl: Timeline) -> None:
    """A short breaker opening (normal operations): holds the queue for 4-18 minutes."""
    rng = tl.rng
    if tl.now < tl.breaker_open_until or any(
        tl.book.queue_block(tl.now + minutes * MINUTE) is not None for minutes in (0, 10, 20)
    ):
        return  # keep breaker noise out of (and clear of the edges of) incident windows
    minutes = rng.randint(4, 18)
    tl.breaker_open_until = tl.now + minutes * MINUTE
    if minutes > 10:  # the watchdog alerts on breakers open for more than ten minutes
        tl.schedule(tl.now + 10 * MINUTE, _breaker_alert, tl, 10, "warning")


def _breaker_alert(tl: Timeline, open_minutes: int, severity: str) -> None:
    tl.emit(tl.now, "circuit_breaker_watchdog_alert", severity, {
        "breaker": "posting_executor", "state": "open", "open_minutes": open_minutes,
        "threshold_minutes": 10,
    }, f"Circuit breaker posting_executor open for {open_minutes} min (threshold 10 min)")


def _daemon_started(tl: Timeline) -> None:
    deploy = tl.deploy_at(tl.now)
    tl.emit(tl.now, "executor_daemon_started", "info", {
        "git_sha": deploy.git_sha, "app_version": deploy.app_version, "pid": deploy.pid,
        "node_version": "v20.11.1",
    }, f"Executor daemon started: v{deploy.app_version} ({deploy.git_sha}), pid {deploy.pid}")


# ---------------------------------------------------------------------------------------------
# Incident steps (the parts that are not decided inside the jobs)
# ---------------------------------------------------------------------------------------------


def _spike_steps(tl: Timeline, incident: Incident) -> None:
    error = cat.TRACKED_BY_TYPE[incident.subject.removeprefix("error_")]
    span = incident.end - incident.start
    count = incident.details["injected_count"]
    for at in sorted(incident.start + tl.rng.randrange(span) for _ in range(count)):
        tl.schedule(at, _tracked_error, tl, error)


def _breaker_steps(tl: Timeline, incident: Incident) -> None:
    for minutes in range(10, (incident.end - incident.start) // MINUTE, 30):
        tl.schedule(incident.start + minutes * MINUTE, _breaker_alert, tl, minutes,
                    "critical" if minutes >= 60 else "warning")
    for minutes in range(60, (incident.end - incident.start) // MINUTE, 60):
        tl.schedule(incident.start + minutes * MINUTE, _breaker_stuck, tl, minutes)
    tl.schedule(incident.start + 61 * MINUTE, lambda: tl.critical_alert(
        tl.now, "circuit_breaker_stuck", "circuit_breaker_stuck", breaker="posting_executor"))
    tl.schedule(incident.end, _breaker_reset, tl, (incident.end - incident.start) // MINUTE)


def _breaker_stuck(tl: Timeline, open_minutes: int) -> None:
    tl.emit(tl.now, "circuit_breaker_stuck", "critical", {
        "breaker": "posting_executor", "open_minutes": open_minutes, "failures_before_open": 5,
        "last_error": "page.waitForSelector: Timeout 30000ms exceeded.",
    }, f"Circuit breaker posting_executor stuck open for {open_minutes} min")


def _breaker_reset(tl: Timeline, open_minutes: int) -> None:
    tl.emit(tl.now, "circuit_breaker_forced_reset", "warning", {
        "breaker": "posting_executor", "open_minutes": open_minutes,
        "reset_by": "circuit_breaker_watchdog",
    }, f"Circuit breaker posting_executor force-reset after {open_minutes} min")


def _null_burst_steps(tl: Timeline, incident: Incident) -> None:
    tl.schedule(incident.start - 20 * MINUTE, _planner_catch_up, tl, incident.start,
                incident.state["injected"])


def _planner_catch_up(tl: Timeline, first: int, count: int) -> None:
    """A planner catch-up: ``count`` decisions due over the 40 minutes from ``first``, so that an
    incident hour has posts to act on even at night."""
    for index in range(count):
        scheduled = first + 2 * MINUTE + index * 38 * MINUTE // count
        tl.content_queue.append(tl.new_decision(tl.now + index * 1000, "single", scheduled))


def _cause_steps(tl: Timeline, incident: Incident) -> None:
    error = cat.TRACKED_BY_TYPE[cat.CAUSE_TYPE.removeprefix("error_")]
    span = incident.state["cause_end"] - incident.start
    for at in sorted(incident.start + tl.rng.randrange(span) for _ in range(incident.details["cause_count"])):
        tl.schedule(at, _tracked_error, tl, error)
    effect_start = incident.state["effect_start"]
    tl.schedule(effect_start - 20 * MINUTE, _planner_catch_up, tl, effect_start, tl.rng.randint(5, 7))


def _verification_steps(tl: Timeline, incident: Incident) -> None:
    span = incident.state["window_end"] - incident.start
    for at in sorted(incident.start + tl.rng.randrange(span) for _ in range(incident.state["count"])):
        tl.schedule(at, _doomed_verification_failed, tl, incident)


def _doomed_verification_failed(tl: Timeline, incident: Incident) -> None:
    """A verification_failed row that the guard deletes a few minutes later."""
    event_id = emit_verification_failed(tl, tl.now)
    incident.details["event_ids"].append(event_id)
    tl.deletions.append((tl.now + incident.state["delete_after"], event_id))


def _nothing(tl: Timeline, incident: Incident) -> None:
    """Kinds decided inside the jobs and the emitter (shutdown, streak, late commit)."""


INCIDENT_STEPS: dict[str, Callable[["Timeline", Incident], None]] = {
    "error_spike": _spike_steps,
    "circuit_breaker_stuck": _breaker_steps,
    "null_tweet_id_burst": _null_burst_steps,
    "job_failure_streak": _nothing,
    "silent_shutdown": _nothing,
    "cause_effect": _cause_steps,
    "late_commit": _nothing,
    "deleted_verification_failed": _verification_steps,
}
