"""The posting and reply queues: gates, attempts and what each outcome writes.

One run of the posting (or reply_posting) job looks at the ready decisions, decides whether a
gate holds the queue (incident, circuit breaker, rate limit, safeguards), and otherwise attempts
one decision (up to three replies). An attempt writes a posting_attempts row, moves the decision
through its statuses and emits the post-lifecycle events, ErrorTracker events and failure codes.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestration.lib.simulator import catalogue as cat
from orchestration.lib.simulator.model import HOUR, MINUTE, SECOND, Decision, iso, snowflake

if TYPE_CHECKING:
    from orchestration.lib.simulator.generate import Timeline

MAX_RETRIES = 3
STALE_AFTER = 3 * HOUR
REPLY_SLO = 60 * MINUTE
EFFECT_FAILURE_SHARE = 0.85  # share of attempts failing with PLAYWRIGHT_TIMEOUT in an effect window
HOLD_LOOKAHEAD = 6 * MINUTE  # longer than a batch of five attempts


@dataclass(frozen=True)
class QueueKind:
    name: str
    job_type: str  # posting_attempts.job_type
    tick_event: str
    blocked_event: str
    success_event: str
    failed_event: str
    failure_status: str  # posting_attempts.status of a failed attempt (two writers, two words)
    component: str
    max_per_hour: int
    min_interval: int
    batch: int


CONTENT = QueueKind("content", "post", "POSTING_QUEUE_TICK", "POSTING_QUEUE_BLOCKED", "POST_SUCCESS",
                    "POST_FAILED", "failure", "posting_queue", 3, 15 * MINUTE, 1)
REPLIES = QueueKind("reply", "reply", "REPLY_QUEUE_TICK", "REPLY_QUEUE_BLOCKED", "REPLY_SUCCESS",
                    "REPLY_FAILED", "failed", "reply_queue", 10, 0, 5)


def run_queue(tl: Timeline, kind: QueueKind, at: int) -> None:
    queue, posts = _queue_of(tl, kind)
    _skip_stale(tl, queue, at)
    while posts and posts[0] <= at - HOUR:
        posts.popleft()
    ready = sorted((d for d in queue if d.scheduled_at <= at and d.history[-1].at <= at),
                   key=lambda d: (d.scheduled_at, d.seq))
    # in these incident windows the queue drains everything ready (a catch-up), safeguards aside
    catch_up = tl.book.active("null_tweet_id_burst", at) or tl.book.effect_window(at)
    reason = _gate(tl, kind, at, ready, posts, bypass_safeguards=catch_up is not None)
    tl.emit(at, kind.tick_event, "info", {
        "ready_count": len(ready), "queued_total": len(queue), "posted_last_hour": len(posts),
        "max_per_hour": kind.max_per_hour, "blocked": reason is not None,
    }, f"{kind.name.title()} queue tick: {len(ready)} ready of {len(queue)} queued, "
       f"{len(posts)}/{kind.max_per_hour} in the last hour")
    if reason is not None:
        _emit_blocked(tl, kind, at + 1000, reason, ready, posts)
        return
    cursor = at + tl.rng.randint(200, 1500) * 1000
    for decision in ready if catch_up is not None else ready[: kind.batch]:
        cursor = attempt(tl, kind, decision, cursor) + tl.rng.randint(1, 5) * SECOND
        if decision.status != "queued":
            queue.remove(decision)


def _queue_of(tl: Timeline, kind: QueueKind) -> tuple[list[Decision], deque[int]]:
    if kind is CONTENT:
        return tl.content_queue, tl.content_posts
    return tl.reply_queue, tl.reply_posts


def _skip_stale(tl: Timeline, queue: list[Decision], at: int) -> None:
    """Decisions left waiting for hours (after a block) are skipped, as the real cleanup does."""
    for decision in [d for d in queue if d.scheduled_at < at - STALE_AFTER and d.history[-1].at <= at]:
        waited = (at - decision.scheduled_at) // MINUTE
        decision.change(at, "stale_skipped", status="skipped",
                        skip_reason=f"stale_decision: scheduled {waited} min ago")
        decision.change(at + 2 * 24 * HOUR, "stale_archived", status="archived")
        queue.remove(decision)


def _gate(tl: Timeline, kind: QueueKind, at: int, ready: list[Decision], posts: deque[int], *,
          bypass_safeguards: bool) -> str | None:
    # an incident's hold starts a few minutes early, so no attempt begun just before it can
    # still land a successful post inside its window
    held = tl.book.queue_block(at) or tl.book.queue_block(at + HOLD_LOOKAHEAD)
    if held is not None:
        return held
    if at < tl.breaker_open_until:
        return cat.CIRCUIT_BREAKER
    if at < tl.rate_limited_until:
        return cat.RATE_LIMIT
    flap = tl.rng.random()
    if flap < 0.003:  # health gates flapping for one run, as they do in production
        return cat.GHOST_PROTECTION if flap < 0.002 else cat.MIGRATION_HEALTH
    if not ready:
        return cat.NO_READY_DECISIONS
    if bypass_safeguards:
        return None
    if len(posts) >= kind.max_per_hour:
        return cat.SAFEGUARD_MAX_PER_HOUR
    if kind.min_interval and posts and at - posts[-1] < kind.min_interval:
        return cat.SAFEGUARD_MIN_INTERVAL
    return None


def _emit_blocked(tl: Timeline, kind: QueueKind, at: int, reason: str, ready: list[Decision],
                  posts: deque[int]) -> None:
    payload: dict[str, object] = {"reason": reason, "ready_count": len(ready),
                                  "next_check_in_ms": 300_000 if kind is CONTENT else 1_800_000}
    if reason == cat.CIRCUIT_BREAKER:
        payload.update(breaker_state="open", breaker="posting_executor")
    elif reason == cat.RATE_LIMIT:
        payload.update(rate_limited_until=iso(tl.rate_limited_until))
    elif reason == cat.SAFEGUARD_MAX_PER_HOUR:
        payload.update(posted_last_hour=len(posts), limit=kind.max_per_hour)
    elif reason == cat.SAFEGUARD_MIN_INTERVAL:
        payload.update(minutes_since_last_post=round((at - posts[-1]) / MINUTE, 1),
                       min_interval_minutes=kind.min_interval // MINUTE)
    severity = "info" if reason == cat.NO_READY_DECISIONS else "warning"
    tl.emit(at, kind.blocked_event, severity, payload,
            f"{kind.name.title()} queue blocked: {reason} ({len(ready)} ready)")


# ---------------------------------------------------------------------------------------------
# One attempt
# ---------------------------------------------------------------------------------------------


def attempt(tl: Timeline, kind: QueueKind, decision: Decision, at: int) -> int:
    """Attempt one decision starting at ``at``; returns when the attempt ended."""
    rng = tl.rng
    number = decision.retry_count + 1
    decision.change(at, "attempt_claimed", status="posting")
    permit_id = tl.new_id()
    tl.emit(at, "posting_attempt_started", "info", {
        "decision_id": decision.decision_id, "decision_type": decision.decision_type,
        "attempt": number, "permit_id": permit_id,
        "pipeline_source": decision.features["pipeline_source"],
        "target_tweet_id": decision.target_tweet_id,
    }, f"Starting {kind.job_type} attempt {number}/{MAX_RETRIES} for decision {decision.decision_id}")
    if kind is CONTENT:
        tl.emit(at + 5000, "POST_ATTEMPT", "info", {
            "decision_id": decision.decision_id, "decision_type": decision.decision_type,
            "thread_length": decision.thread_length, "scheduled_at": iso(decision.scheduled_at),
            "attempt": number,
        }, f"Attempting {decision.decision_type} post {decision.decision_id} (attempt {number}/"
           f"{MAX_RETRIES}, scheduled {iso(decision.scheduled_at)})")
    result, failure = _draw_result(tl, kind, at)
    steps = _step_durations(tl, decision, at, failure)
    total_ms = sum(steps.values())
    end = at + total_ms * 1000
    metrics = json.dumps({"steps": steps, "total_ms": total_ms, "attempt": number,
                          "browser_pool_queue_len": rng.randint(0, 3)})
    handler = {
        "success": _succeeded, "null": _null_tweet_id, "failure": _failed, "blocked_226": _blocked_226,
        "db_write_failed": _db_write_failed, "crashed": _crashed,
    }[result]
    handler(tl, kind, decision, at, end, metrics, failure)
    return end


def _draw_result(tl: Timeline, kind: QueueKind, at: int) -> tuple[str, cat.PostFailure | None]:
    rng = tl.rng
    burst = tl.book.active("null_tweet_id_burst", at)
    if burst is not None and at < burst.end - 5 * MINUTE:
        return "null", None
    if tl.book.effect_window(at) is not None and rng.random() < EFFECT_FAILURE_SHARE:
        return "failure", cat.PLAYWRIGHT_TIMEOUT
    draw = rng.random()
    if draw < 0.125:
        return "failure", rng.choices(cat.POST_FAILURES, weights=[f.weight for f in cat.POST_FAILURES])[0]
    near_burst = tl.book.active("null_tweet_id_burst", at + 10 * MINUTE) or burst
    if draw < 0.133:
        # no stray NULL tweet id right next to a burst, so the burst's truth count is exact
        return ("success" if near_burst else "null"), None
    if draw < 0.137 and kind is CONTENT:
        return "blocked_226", None
    if draw < 0.142:
        return "db_write_failed", None
    if draw < 0.145:
        return "crashed", None
    return "success", None


def _step_durations(tl: Timeline, decision: Decision, at: int,
                    failure: cat.PostFailure | None) -> dict[str, int]:
    rng = tl.rng
    parts = decision.thread_length
    steps = {
        "acquire_context_ms": rng.randint(50, 2500),
        "navigate_ms": rng.randint(800, 6000),
        "compose_ms": rng.randint(500, 4000) * parts,
        "submit_ms": rng.randint(300, 3000),
        "verify_ms": rng.randint(1000, 8000),
    }
    if failure is cat.PLAYWRIGHT_TIMEOUT:
        steps["submit_ms"] = 30_000 + rng.randint(0, 900)
        steps["verify_ms"] = 0
    elif failure is not None:
        steps["verify_ms"] = 0
    return steps


def _row(tl: Timeline, kind: QueueKind, decision: Decision, at: int, status: str,
         tweet_id: str | None, error: str | None, metrics: str) -> None:
    tl.out.attempts.append((tl.new_id(), kind.job_type, decision.decision_id,
                            decision.target_tweet_id, tweet_id, status, error, metrics, at))


def _succeeded(tl: Timeline, kind: QueueKind, decision: Decision, at: int, end: int, metrics: str,
               failure: cat.PostFailure | None) -> None:
    rng = tl.rng
    tweet_id = snowflake(end, rng)
    thread_ids = None
    if decision.decision_type == "thread":
        ids = [tweet_id] + [snowflake(end + i * 1_500_000, rng) for i in range(1, decision.thread_length)]
        thread_ids = json.dumps(ids)
    decision.change(end, "post_success", status="posted", posted_at=end, tweet_id=tweet_id,
                    thread_tweet_ids=thread_ids, error_message=None)
    url = cat.tweet_url(tweet_id)
    duration_ms = (end - at) // 1000
    deploy = tl.deploy_at(end)
    payload: dict[str, object] = {
        "decision_id": decision.decision_id, "tweet_id": tweet_id, "url": url,
        "duration_ms": duration_ms, "decision_type": decision.decision_type,
        "app_version": deploy.app_version, "git_sha": deploy.git_sha,
    }
    if kind is CONTENT:
        payload["thread_length"] = decision.thread_length
        message = f"Posted {decision.decision_type} {decision.decision_id} as {url} in {duration_ms}ms"
    else:
        payload["target_tweet_id"] = decision.target_tweet_id
        message = f"Replied to tweet {decision.target_tweet_id} with {url} in {duration_ms}ms"
    tl.emit(end, kind.success_event, "info", payload, message)
    _row(tl, kind, decision, at, "success", tweet_id, None, metrics)
    _note_post(tl, kind, decision, end)


def _note_post(tl: Timeline, kind: QueueKind, decision: Decision, end: int) -> None:
    _, posts = _queue_of(tl, kind)
    posts.append(end)
    if kind is REPLIES and end - decision.created_at > REPLY_SLO:
        waited = (end - decision.created_at) // MINUTE
        tl.emit(end + 1000, "reply_slo_violation", "high", {
            "decision_id": decision.decision_id, "target_tweet_id": decision.target_tweet_id,
            "waited_minutes": waited, "slo_minutes": REPLY_SLO // MINUTE,
            "slot": iso(end - end % (15 * MINUTE)),
        }, f"Reply SLO missed: reply to {decision.target_tweet_id} went out after {waited} min "
           f"(SLO {REPLY_SLO // MINUTE} min)")


def _null_tweet_id(tl: Timeline, kind: QueueKind, decision: Decision, at: int, end: int, metrics: str,
                   failure: cat.PostFailure | None) -> None:
    decision.change(end, "post_null_tweet_id", status="posted", posted_at=end, tweet_id=None,
                    thread_tweet_ids=None, error_message=None)
    tl.emit(end, "POST_ID_CAPTURE_FAILED", "warning", {
        "decision_id": decision.decision_id, "decision_type": decision.decision_type,
        "primary_error": "CreateTweet response had no rest_id",
        "error": "profile scrape found no matching tweet within 30000ms",
        "fallback": "profile_scrape", "url": f"https://x.com/{cat.BOT_HANDLE}",
    }, f"Posted decision {decision.decision_id} but could not capture its tweet id")
    tl.track_error(end + 10_000, "null_tweet_id",
                   f"Decision {decision.decision_id} marked posted with tweet_id NULL "
                   f"(capture failed after {(end - at) // 1000}ms)",
                   component=kind.component, error_name="TweetIdCaptureError",
                   decision_id=decision.decision_id, retry_count=decision.retry_count)
    _row(tl, kind, decision, at, "success", None, None, metrics)
    _note_post(tl, kind, decision, end)
    burst = tl.book.active("null_tweet_id_burst", at)
    if burst is not None:
        decision.in_null_burst = True  # the recovery job cannot find these
        burst.details["count"] += 1
        burst.details["decision_ids"].append(decision.decision_id)
    else:
        tl.recovery_pending.append(decision)


def _failed(tl: Timeline, kind: QueueKind, decision: Decision, at: int, end: int, metrics: str,
            failure: cat.PostFailure | None) -> None:
    assert failure is not None
    rng = tl.rng
    number = decision.retry_count + 1
    text = cat.fill(failure.message, rng, decision=decision.decision_id)
    stack = cat.stack_trace(rng, failure.error_name, text)
    duration_ms = (end - at) // 1000
    if kind is CONTENT:
        payload: dict[str, object] = {
            "decision_id": decision.decision_id, "decision_type": decision.decision_type,
            "error_code": failure.code, "error_message": text, "stack_trace": stack,
            "attempt": number, "duration_ms": duration_ms,
        }
    else:
        payload = {
            "decision_id": decision.decision_id, "target_tweet_id": decision.target_tweet_id,
            "error_code": failure.code, "error": text, "stack": stack, "attempt": number,
            "duration_ms": duration_ms,
        }
    tl.emit(end, kind.failed_event, "error", payload, cat.POST_FAILED_MESSAGE.format(
        event=kind.failed_event, decision=decision.decision_id, code=failure.code, ms=duration_ms, text=text[:160]))
    failed_payload: dict[str, object] = {"decision_id": decision.decision_id, "attempt": number,
                                         "original_error": text, "job_type": kind.job_type}
    if rng.random() < 0.3:
        failed_payload["primary_error"] = f"fallback poster also failed: {failure.error_name}"
    tl.emit(end + 2000, "posting_attempt_failed", "error", failed_payload,
            cat.ATTEMPT_FAILED_MESSAGE.format(number=number, decision=decision.decision_id, code=failure.code))
    tl.track_error(end + 3000, "post_failure" if kind is CONTENT else "reply_failure", text,
                   component=kind.component, error_name=failure.error_name,
                   decision_id=decision.decision_id, retry_count=number)
    _row(tl, kind, decision, at, kind.failure_status, None, text[:500], metrics)
    effect = tl.book.effect_window(at)
    if effect is not None and failure is cat.PLAYWRIGHT_TIMEOUT:
        effect.details["effect_count"] += 1
    if failure.retryable and number < MAX_RETRIES:
        decision.change(end, "failure_requeued", status="queued", retry_count=number,
                        error_message=text[:500], scheduled_at=end + rng.randint(10, 30) * MINUTE)
    else:
        final = failure.final_status if not failure.retryable else "failed"
        decision.change(end, "failure_final", status=final, retry_count=number, error_message=text[:500])
    if failure.code == "RATE_LIMITED_429":
        start_rate_limit(tl, end, decision)


def start_rate_limit(tl: Timeline, at: int, decision: Decision) -> None:
    if at < tl.rate_limited_until:
        return
    rng = tl.rng
    until = at + rng.randint(15, 45) * MINUTE
    tl.rate_limited_until = until
    tl.emit(at + 500_000, "EXECUTOR_RATE_LIMIT_DETECTED", "warning", {
        "source": "CreateTweet", "decision_id": decision.decision_id,
        "retry_after_s": (until - at) // SECOND,
    }, f"Rate limit detected on CreateTweet; backing off {(until - at) // SECOND}s")
    tl.emit(at + MINUTE, "EXECUTOR_RATE_LIMIT_ACTIVE", "warning", {
        "rate_limited_until": iso(until), "remaining_ms": (until - at - MINUTE) // 1000,
    }, f"Executor rate limited until {iso(until)}")
    tl.schedule(until, _rate_limit_cleared, tl, until - at)


def _rate_limit_cleared(tl: Timeline, active_for: int) -> None:
    tl.emit(tl.now, "EXECUTOR_RATE_LIMIT_CLEARED", "info", {"active_for_ms": active_for // 1000},
            f"Rate limit cleared after {active_for // SECOND}s")


def _blocked_226(tl: Timeline, kind: QueueKind, decision: Decision, at: int, end: int, metrics: str,
                 failure: cat.PostFailure | None) -> None:
    error = ("Authorization: This request looks like it might be automated. To protect our users "
             "from spam and other malicious activity, we can't complete this action right now. (226)")
    tl.emit(end, "CREATE_TWEET_226_BLOCKED", "warning", {
        "decision_id": decision.decision_id, "error_code": 226, "error": error,
    }, f"CreateTweet returned 226 for decision {decision.decision_id}; marking blocked")
    decision.change(end, "blocked_226", status="blocked", skip_reason="x_226_automated_request",
                    error_message=error)
    _row(tl, kind, decision, at, kind.failure_status, None, error, metrics)


def _db_write_failed(tl: Timeline, kind: QueueKind, decision: Decision, at: int, end: int,
                     metrics: str, failure: cat.PostFailure | None) -> None:
    tweet_id = snowflake(end, tl.rng)
    error = (f"update content_metadata set status='posted' where decision_id='{decision.decision_id}'"
             f" failed: canceling statement due to statement timeout")
    decision.change(end, "db_write_failed", status="posting_attempt", error_message=error)
    tl.pending_posts[decision.decision_id] = (tweet_id, end)
    tl.recovery_pending.append(decision)
    tl.track_error(end + 1000, "database_save_failed", error, component="database",
                   error_name="PostgrestError", decision_id=decision.decision_id,
                   tweet_id=tweet_id, retry_count=decision.retry_count)
    _row(tl, kind, decision, at, "post_succeeded_db_write_failed", tweet_id, error, metrics)
    _note_post(tl, kind, decision, end)


def _crashed(tl: Timeline, kind: QueueKind, decision: Decision, at: int, end: int, metrics: str,
             failure: cat.PostFailure | None) -> None:
    """The worker died mid-attempt: the row stays 'attempting', the decision stuck in 'posting'."""
    _row(tl, kind, decision, at, "attempting", None, None, metrics)
    tl.schedule(at + 30 * MINUTE, _reset_stuck, tl, decision)


def _reset_stuck(tl: Timeline, decision: Decision) -> None:
    if decision.status != "posting":
        return
    error = "stuck in 'posting' for 30 minutes: reset by watchdog"
    decision.change(tl.now, "stuck_reset", status="failed", error_message=error)
    tl.emit(tl.now, "stuck_post_reset", "warning", {"decision_id": decision.decision_id,
                                                    "stuck_minutes": 30, "error": error},
            f"Reset decision {decision.decision_id} stuck in posting for 30 minutes")
