"""What each scheduled job does on a run, beyond its heartbeat (which the engine writes).

A behaviour gets the run's start, its drawn outcome and duration. Most only act on success (a
failed run crashed before doing its work); the metrics scraper writes its run row whatever the
outcome, and sets the heartbeat's skip reason or error from its own status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from orchestration.lib.simulator import catalogue as cat
from orchestration.lib.simulator.model import (
    DAY,
    HOUR,
    MINUTE,
    Decision,
    JobSpec,
    Outcome,
    activity,
    iso,
    snowflake,
)
from orchestration.lib.simulator.posting import CONTENT, REPLIES, run_queue

if TYPE_CHECKING:
    from orchestration.lib.simulator.generate import Timeline

Behaviour = Callable[["Timeline", JobSpec, int, Outcome, int], None]

QUALITY_SKIP_REASONS = ("quality_below_threshold", "duplicate_topic_24h", "similar_to_recent_post")
SCHEDULER_DENY_REASONS = ("author_cooldown", "already_replied", "low_score", "toxicity_filter")
SCRAPER_SKIPS = (
    ("skipped_not_runner", "runner_mode=false on this instance", 0.25),
    ("skipped_memory", "rss {n}MB above 1400MB limit", 0.15),
    ("skipped_no_posts", "no posts in the last 48h to scrape", 0.35),
    ("skipped_all_filtered", "all {n} candidates filtered (scraped < 30 min ago)", 0.25),
)
HUNG_AFTER = 10 * MINUTE


def _millis(n: int) -> int:
    """``n`` milliseconds, in the simulator's microseconds."""
    return n * 1000


def posting(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status == "success":
        run_queue(tl, CONTENT, at + _millis(tl.rng.randint(200, 2000)))


def reply_posting(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status == "success":
        run_queue(tl, REPLIES, at + _millis(tl.rng.randint(200, 2000)))


def plan(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    """Generate 1-2 content decisions an hour (more by day), scheduled 5-60 min ahead."""
    if outcome.status != "success":
        return
    rng = tl.rng
    count = 1 + (rng.random() < 0.5 * activity(at))
    skipped = 0
    for index in range(count):
        created = at + duration * (index + 1) // (count + 1)
        decision_type = "thread" if rng.random() < 0.25 else "single"
        decision = tl.new_decision(created, decision_type, created + rng.randint(5, 60) * MINUTE)
        if rng.random() < 0.08:  # the quality gate rejects it at birth
            skipped += 1
            decision.change(created + 50_000, "quality_gate_skipped", status="skipped",
                            skip_reason=rng.choice(QUALITY_SKIP_REASONS))
            decision.change(created + 2 * DAY, "quality_archived", status="archived")
            continue
        tl.content_queue.append(decision)
        if rng.random() < 0.01:
            tl.schedule(created + rng.randint(5, 30) * MINUTE, _cancel, tl, decision)
    tl.emit(at + duration, "plan_job_completed", "info", {
        "decisions_created": count, "skipped_low_quality": skipped, "duration_ms": duration // 1000,
    }, f"plan: generated {count} decisions ({skipped} rejected by quality gate) in "
       f"{duration // 1000}ms")


def _cancel(tl: Timeline, decision: Decision) -> None:
    if decision.status != "queued" or decision.history[-1].at > tl.now:
        return
    decision.change(tl.now, "cancelled", status="cancelled", skip_reason="cancelled_by_operator")
    tl.content_queue.remove(decision)
    tl.emit(tl.now, "decision_cancelled", "info", {"decision_id": decision.decision_id,
                                                   "reason": "cancelled_by_operator"},
            f"Decision {decision.decision_id} cancelled by operator")


def reply_v2_fetch(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    """Fetch candidate tweets, score them, and let the scheduler turn the best into a reply decision."""
    rng = tl.rng
    run_id = f"{rng.getrandbits(32):08x}"
    if outcome.status == "failure" and rng.random() < 0.5:  # some failures also log their own error
        tl.emit(at + duration - 1000, "reply_v2_pipeline_error", "error", {
            "run_id": run_id, "stage": outcome.phase,
            "last_error": f"{outcome.error_name}: {outcome.error}"[:500],
        }, f"reply_v2 run {run_id} aborted in {outcome.phase}")
    if outcome.status != "success":
        return
    tl.emit(at + 100_000, "reply_v2_fetch_started", None,
            {"run_id": run_id, "accounts_checked": rng.randint(20, 60)},
            f"reply_v2 fetch {run_id} started")
    candidates = max(0, round(rng.gauss(8, 2.5) * tl.scale * activity(at)))
    best: tuple[float, str, str] | None = None
    for index in range(candidates):
        when = at + 200_000 + duration * index // max(1, candidates)
        tweet_id, author = snowflake(when - rng.randint(5, 240) * MINUTE, rng), rng.choice(cat.TARGET_AUTHORS)
        score = round(rng.uniform(0.1, 0.99), 3)
        tl.emit(when, "reply_v2_candidate_scored", None, {
            "run_id": run_id, "candidate_tweet_id": tweet_id, "author": author, "score": score,
            "likes": rng.randint(5, 40_000), "url": cat.tweet_url(tweet_id, author),
        }, f"Scored {cat.tweet_url(tweet_id, author)}: {score}")
        if best is None or score > best[0]:
            best = (score, tweet_id, author)
    finish = at + duration
    if best is not None:
        _schedule_reply(tl, finish - 500_000, *best)
    if rng.random() < 0.03:
        author = rng.choice(cat.TARGET_AUTHORS)
        minutes = rng.choice((30, 60, 120, 240))
        tl.emit(finish - 400_000, "reply_gate_blocked", "warning",
                {"reason": "author_cooldown", "author": author, "cooldown_minutes": minutes},
                f"Reply gate blocked @{author}: cooldown {minutes} min")
    tl.emit(finish, "reply_v2_fetch_completed", "info", {
        "run_id": run_id, "candidates": candidates, "duration_ms": duration // 1000,
    }, f"reply_v2 fetch {run_id}: {candidates} candidates in {duration // 1000}ms")


def _schedule_reply(tl: Timeline, at: int, score: float, tweet_id: str, author: str) -> None:
    rng = tl.rng
    draw = rng.random()
    base = {"target_tweet_id": tweet_id, "author": author, "score": score}
    if draw < 0.28 * activity(at):
        decision = tl.new_decision(at, "reply", at + rng.randint(1, 10) * MINUTE,
                                   target_tweet_id=tweet_id, pipeline_source="reply_v2_scheduler")
        tl.reply_queue.append(decision)
        tl.emit(at, "scheduler_outcome", "info",
                {"outcome_type": "DECISION_CREATED", "decision_id": decision.decision_id, **base},
                f"Reply scheduled for @{author} tweet {tweet_id} (decision {decision.decision_id})")
    elif draw < 0.70:
        reason = rng.choice(SCHEDULER_DENY_REASONS)
        tl.emit(at, "scheduler_outcome", "info", {"outcome_type": "DENY", "reason": reason, **base},
                f"Reply to {tweet_id} denied: {reason}")
    elif draw < 0.92:
        tl.emit(at, "scheduler_outcome", "info", {"outcome_type": "SKIP", "reason": "queue_full", **base},
                f"Reply to {tweet_id} skipped: queue_full")
    elif draw < 0.96:
        error = cat.fill("OpenAI 500 Internal Server Error after {ms}ms", rng)
        tl.emit(at, "scheduler_outcome", "error", {"outcome_type": "ERROR", "error": error, **base},
                f"Reply scheduler error for {tweet_id}: {error}")
    else:
        tl.emit(at, "scheduler_outcome", "warning",
                {"outcome_type": "TIMEOUT", "timeout_ms": 30_000, **base},
                f"Reply scheduler timed out after 30000ms for {tweet_id}")


def metrics_scraper(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    """One metrics_scraper_runs row per run; its status decides the heartbeat's text."""
    rng = tl.rng
    tl.scraper_run_id += 1
    eligible = scraped = updated = skipped = failed = 0
    skip_reason = error = None
    if outcome.status == "skipped":
        status, template, _ = rng.choices(SCRAPER_SKIPS, weights=[s[2] for s in SCRAPER_SKIPS])[0]
        skip_reason = outcome.skip_reason = cat.fill(template, rng)
        eligible = skipped = rng.randint(5, 40) if status == "skipped_all_filtered" else 0
    elif outcome.status == "failure":
        status = "error_fetch" if rng.random() < 0.7 else "crashed"
        if not outcome.forced:
            outcome.error_name = "ScraperError" if status == "error_fetch" else "Error"
            outcome.error = cat.fill(
                "analytics fetch failed for https://x.com/{handle}/status/{tweet}/analytics after {ms}ms"
                if status == "error_fetch" else "Browser context crashed: Target closed", rng)
        error = f"{outcome.error_name}: {outcome.error}"[:500]
        eligible = rng.randint(10, 60)
        scraped = rng.randint(0, eligible // 2)
        failed = eligible - scraped
    else:
        status = "completed"
        eligible = rng.randint(10, 60)
        failed = rng.randint(0, 3)
        skipped = rng.randint(0, 5)
        scraped = eligible - failed - skipped
        updated = scraped - rng.randint(0, min(3, scraped))
        tl.emit(at + duration, "metrics_scraper_completed", "info", {
            "eligible": eligible, "scraped": scraped, "updated": updated, "failed": failed,
            "duration_ms": duration // 1000,
        }, f"Metrics scraper: {scraped}/{eligible} scraped, {updated} updated, {failed} failed in "
           f"{duration // 1000}ms")
    tl.out.scraper_runs.append((tl.scraper_run_id, at, status != "skipped_not_runner", status, eligible,
                                scraped, updated, skipped, failed, duration // 1000, skip_reason, error))


def reply_metrics_scraper(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status != "success":
        return
    checked = tl.rng.randint(5, 40)
    tl.emit(at + duration, "reply_metrics_scraper_completed", "info",
            {"replies_checked": checked, "duration_ms": duration // 1000},
            f"Reply metrics: checked {checked} replies in {duration // 1000}ms")


def learn(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status != "success":
        return
    rng = tl.rng
    processed, best = rng.randint(0, 30), rng.choice(cat.GENERATORS)
    avg_er = round(rng.uniform(0.005, 0.04), 4)
    tl.emit(at + duration, "learn_job_completed", "info", {
        "outcomes_processed": processed, "best_generator": best, "avg_engagement_rate": avg_er,
        "duration_ms": duration // 1000,
    }, f"learn: processed {processed} outcomes; best generator {best} (ER {avg_er})")


def learning_loop(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status != "success":
        return
    rng = tl.rng
    weights = {g: round(rng.uniform(0.02, 0.3), 3) for g in cat.GENERATORS}
    samples = rng.randint(40, 400)
    # this writer predates the event_data column: its payload lands in metadata
    tl.emit(at + duration, "learning_loop_completed", "info",
            {"samples": samples, "generator_weights": weights, "duration_ms": duration // 1000},
            f"Learning loop updated {len(weights)} generator weights from {samples} samples",
            in_metadata=True)


def job_watchdog(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    """Read every heartbeat: hung runs, jobs failing in a row; an hourly report."""
    if outcome.status != "success":
        return
    check_at = at + duration // 2
    failing = 0
    for state in tl.jobs.values():
        snapshot = state.as_of(check_at)
        if snapshot is None or check_at < state.watchdog_quiet_until:
            continue
        updated, last_success, _, status, last_error, consecutive = snapshot
        failing += consecutive >= 3
        if status == "running" and check_at - updated > HUNG_AFTER:
            state.watchdog_quiet_until = check_at + 30 * MINUTE
            tl.emit(check_at, "job_watchdog_hung", "warning", {
                "job_name": state.spec.name, "running_for_ms": (check_at - updated) // 1000,
                "started_at": iso(updated),
            }, f"Job {state.spec.name} has been running for {(check_at - updated) // MINUTE} min")
        elif consecutive >= 3:
            state.watchdog_quiet_until = check_at + 30 * MINUTE
            since = None if last_success is None else (check_at - last_success) // MINUTE
            tl.emit(check_at, "job_watchdog_stuck", "warning", {
                "job_name": state.spec.name, "consecutive_failures": consecutive,
                "minutes_since_success": since, "last_error": (last_error or "")[:200],
            }, f"Job {state.spec.name} stuck: {consecutive} consecutive failures, last success "
               f"{since} min ago")
    if at % HOUR < spec.interval_us:
        tl.emit(check_at + 1000, "production_watchdog_report", "info", {
            "posts_last_hour": len(tl.content_posts), "replies_last_hour": len(tl.reply_posts),
            "failing_jobs": failing, "queue_depth": len(tl.content_queue) + len(tl.reply_queue),
        }, f"Production watchdog: {failing} failing jobs, queue depth "
           f"{len(tl.content_queue) + len(tl.reply_queue)}", in_metadata=True)


def tweet_id_recovery(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    """Fill in tweet ids that posting could not capture (half of them per run, after 10 min)."""
    if outcome.status != "success":
        return
    rng = tl.rng
    when = at + duration
    due = [d for d in tl.recovery_pending if d.history[-1].at + 10 * MINUTE <= at]
    recovered = 0
    for decision in due:
        if rng.random() >= 0.5:
            continue
        tweet_id, posted_at = tl.pending_posts.pop(decision.decision_id, (None, decision.posted_at))
        tweet_id = tweet_id or snowflake(posted_at or when, rng)
        decision.change(when, "tweet_id_recovered", status="posted", posted_at=posted_at, tweet_id=tweet_id,
                        error_message=None)
        tl.recovery_pending.remove(decision)
        recovered += 1
        tl.emit(when, "tweet_id_recovered", "info", {
            "decision_id": decision.decision_id, "tweet_id": tweet_id, "url": cat.tweet_url(tweet_id),
            "recovered_after_ms": (when - (posted_at or when)) // 1000,
        }, f"Recovered tweet id {tweet_id} for decision {decision.decision_id}")
    if due:
        tl.emit(when + 1000, "tweet_id_recovery_completed", "info",
                {"checked": len(due), "recovered": recovered, "duration_ms": duration // 1000},
                f"tweet_id recovery: {recovered}/{len(due)} recovered")


def id_recovery_queue(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    rng = tl.rng
    if outcome.status == "success" and rng.random() < 0.1:
        processed = rng.randint(1, 6)
        tl.emit(at + duration, "id_recovery_queue_processed", "info",
                {"processed": processed, "remaining": rng.randint(0, 4)},
                f"ID recovery queue: processed {processed} entries")


def mega_viral_harvester(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status != "success":
        return
    rng = tl.rng
    scanned, found = rng.randint(50, 400), rng.randint(0, 6)
    tl.emit(at + duration, "mega_viral_harvest_completed", "info", {
        "tweets_scanned": scanned, "viral_found": found, "min_likes": 10_000,
        "duration_ms": duration // 1000,
    }, f"Harvester scanned {scanned} tweets, found {found} with >10000 likes in {duration // 1000}ms")


def truth_integrity(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    """The only writer that fills the ``component`` column."""
    if outcome.status != "success":
        return
    rng = tl.rng
    when = at + duration
    draw = rng.random()
    if draw < 0.02:
        emit_verification_failed(tl, when)
    elif draw < 0.10:
        check = rng.choice(("posted_without_tweet_id", "tweet_id_mismatch", "orphan_attempt"))
        mismatches = rng.randint(1, 5)
        tl.emit(when, "truth_integrity_violation", "warning",
                {"check": check, "mismatches": mismatches, "table": "content_metadata"},
                f"Truth integrity: {mismatches} rows fail {check}", component="truth_integrity")
    else:
        tl.emit(when, "truth_integrity_check_passed", "info",
                {"checks": 6, "rows_checked": rng.randint(100, 800), "duration_ms": duration // 1000},
                "Truth integrity: all 6 checks passed", component="truth_integrity")


def emit_verification_failed(tl: Timeline, at: int) -> str:
    rng = tl.rng
    posted = [d for d in tl.decisions[-50:] if d.tweet_id]
    decision = rng.choice(posted) if posted else None
    tweet_id = decision.tweet_id if decision else snowflake(at - HOUR, rng)
    return tl.emit(at, "verification_failed", "error", {
        "decision_id": decision.decision_id if decision else None, "tweet_id": tweet_id,
        "reason": "tweet_not_found_on_profile", "url": cat.tweet_url(tweet_id),
        "check": "post_verification",
    }, f"Verification failed: {cat.tweet_url(tweet_id)} not found on profile",
        component="truth_integrity")


def hourly_tick(tl: Timeline, spec: JobSpec, at: int, outcome: Outcome, duration: int) -> None:
    if outcome.status != "success":
        return
    rng = tl.rng
    posts, replies = len(tl.content_posts), len(tl.reply_posts)
    mode = rng.choices(("WARMUP", "GROWTH", "COOLDOWN"), weights=(1, 6, 2))[0]
    tl.emit(at + duration, "hourly_tick", "notice", {
        "hour": iso(at - at % HOUR), "posts_last_hour": posts, "replies_last_hour": replies,
        "queue_depth": len(tl.content_queue) + len(tl.reply_queue), "mode": mode,
        "risk_score": round(rng.uniform(0.05, 0.6), 2),
    }, f"Hourly tick: {posts} posts, {replies} replies in the last hour; mode {mode}")


BEHAVIOURS: dict[str, Behaviour] = {
    "posting": posting,
    "reply_posting": reply_posting,
    "plan": plan,
    "metrics_scraper": metrics_scraper,
    "reply_metrics_scraper": reply_metrics_scraper,
    "learn": learn,
    "learning_loop": learning_loop,
    "job_watchdog": job_watchdog,
    "tweet_id_recovery": tweet_id_recovery,
    "id_recovery_queue": id_recovery_queue,
    "reply_v2_fetch": reply_v2_fetch,
    "mega_viral_harvester": mega_viral_harvester,
    "truth_integrity": truth_integrity,
    "hourly_tick": hourly_tick,
}
