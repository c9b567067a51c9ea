"""What the bot says: event families, reasons, error codes, error texts and stack traces.

Texts imitate the TypeScript workers (Playwright, Supabase/PostgREST, OpenAI) so that template
mining and error classification downstream meet the same variety as in production: ids, tweet
ids, URLs, durations and counts are embedded in messages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from string import Formatter
from typing import Callable

BOT_HANDLE = "signal_and_synapse"
SUPABASE_PROJECT = "qtgjmaelglghnlahqpbl"
TARGET_AUTHORS = (
    "hubermanlab", "PeterAttiaMD", "foundmyfitness", "drmarkhyman", "bryan_johnson",
    "DrEricTopol", "sapolsky", "lexfridman", "naval", "paulg", "karpathy", "sama",
)
TOPICS = (
    "sleep architecture", "zone 2 training", "creatine and cognition", "circadian light",
    "glucose variability", "VO2max", "protein timing", "cold exposure", "magnesium", "HRV",
    "longevity biomarkers", "dopamine and focus",
)
GENERATORS = (
    "dataNerd", "mythBuster", "storyteller", "coach", "provocateur", "thoughtLeader",
    "newsReporter", "interestingContent",
)
HOOK_TYPES = ("question", "stat", "contrarian", "story", "list")
PIPELINE_SOURCES = ("planJob", "reply_v2_scheduler", "replyJob", "thread_builder")

# ---------------------------------------------------------------------------------------------
# Queue gates and failure codes
# ---------------------------------------------------------------------------------------------

CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
RATE_LIMIT = "RATE_LIMIT"
SAFEGUARD_MAX_PER_HOUR = "SAFEGUARD_MAX_PER_HOUR"
SAFEGUARD_MIN_INTERVAL = "SAFEGUARD_MIN_INTERVAL"
POSTING_DISABLED = "POSTING_DISABLED"
GHOST_PROTECTION = "GHOST_PROTECTION"
MIGRATION_HEALTH = "MIGRATION_HEALTH"
NO_READY_DECISIONS = "NO_READY_DECISIONS"
SHUTDOWN_REASONS = (POSTING_DISABLED, GHOST_PROTECTION, MIGRATION_HEALTH)


@dataclass(frozen=True)
class PostFailure:
    code: str  # payload error_code
    error_name: str
    message: str  # may hold {ms}, {n}, {url}
    weight: float
    retryable: bool = True
    final_status: str = "failed"  # decision status once retries are exhausted or not allowed


POST_FAILURES: tuple[PostFailure, ...] = (
    PostFailure("PLAYWRIGHT_TIMEOUT", "TimeoutError",
                "page.waitForSelector: Timeout {ms}ms exceeded. waiting for locator("
                "'[data-testid=\"tweetButton\"]') to be visible", 0.36),
    PostFailure("RATE_LIMITED_429", "RateLimitError",
                "HTTP 429 Too Many Requests from https://x.com/i/api/graphql/{op}/CreateTweet "
                "(retry-after {n}s)", 0.18),
    PostFailure("AUTH_REQUIRED", "AuthError",
                "Session expired: redirected to https://x.com/i/flow/login after {ms}ms", 0.05,
                retryable=False, final_status="failed_permanent"),
    PostFailure("TargetClosedError", "TargetClosedError",
                "page.click: Target page, context or browser has been closed", 0.12),
    PostFailure("ComposerNotFoundError", "ComposerNotFoundError",
                "Composer textarea not found after {n} attempts ({ms}ms)", 0.10),
    PostFailure("NavigationError", "Error",
                "page.goto: net::ERR_CONNECTION_RESET at https://x.com/compose/post", 0.09),
    PostFailure("DuplicateContentError", "DuplicateContentError",
                "X rejected the post: \"Whoops! You already said that.\" (decision {decision})", 0.06,
                retryable=False, final_status="blocked_permanent"),
    PostFailure("VerificationError", "VerificationError",
                "Posted tweet not found on https://x.com/{handle} after {ms}ms", 0.04),
)
PLAYWRIGHT_TIMEOUT = POST_FAILURES[0]

# ---------------------------------------------------------------------------------------------
# ErrorTracker: error_<type> events with payload component/error_type/error_message/context
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedError:
    error_type: str
    component: str
    error_name: str
    message: str
    per_hour: float  # background rate in normal times (before daily seasonality)
    severity: str = "error"


TRACKED_ERRORS: tuple[TrackedError, ...] = (
    TrackedError("database_save_failed", "database", "PostgrestError",
                 "Failed to save decision {decision}: canceling statement due to statement "
                 "timeout ({ms}ms)", 0.8),
    TrackedError("navigation_timeout", "browser", "TimeoutError",
                 "page.goto: Timeout {ms}ms exceeded navigating to https://x.com/{author}/status/"
                 "{tweet}", 0.7),
    TrackedError("rate_limit_exception", "rate_limiter", "RateLimitError",
                 "Rate limit exceeded for /i/api/graphql/{op}/SearchTimeline: retry after {n}s", 0.6,
                 severity="warning"),
    TrackedError("llm_timeout", "content_generator", "APIConnectionTimeoutError",
                 "OpenAI request timed out after {ms}ms (model=gpt-4o-mini, attempt {attempt}/3)", 0.6),
    TrackedError("scraper_parse_failed", "scraper", "ParseError",
                 "Could not parse metrics for tweet {tweet}: selector [data-testid=\"like\"] not "
                 "found after {ms}ms", 0.6),
    TrackedError("json_parse", "content_generator", "SyntaxError",
                 "Unexpected token '}}' in JSON at position {n} (generator {generator})", 0.5),
    TrackedError("supabase_connection", "database", "FetchError",
                 "request to https://" + SUPABASE_PROJECT + ".supabase.co/rest/v1/{table} failed, "
                 "reason: socket hang up", 0.5),
    TrackedError("browser_queue_timeout", "browser_pool", "TimeoutError",
                 "Browser queue timeout after {ms}ms (queue_len={queue}, active 4/4)", 0.3),
    TrackedError("session_expired", "auth", "AuthError",
                 "Session cookie rejected (auth_token age {n}h), re-login required", 0.05,
                 severity="critical"),
)
# The texts of error events, around the catalogue's messages (generate.py, posting.py and labelled.py
# format these, so the labelled sample says exactly what the simulated events say).
TRACKED_EVENT_MESSAGE = "[{component}] {error_type}: {message}"  # message cut to 160 characters
JOB_FAILURE_MESSAGE = "Job {job} failed during {phase} after {ms}ms: {error}"  # error cut to 200
POST_FAILED_MESSAGE = "{event} {decision} [{code}] after {ms}ms: {text}"  # text cut to 160
ATTEMPT_FAILED_MESSAGE = "Attempt {number} for {decision} failed: {code}"
TRACKED_BY_TYPE: dict[str, TrackedError] = {e.error_type: e for e in TRACKED_ERRORS}
# Types whose baseline is high enough for a x10-20 spike to be visible (>10/hour).
SPIKE_TYPES = tuple(f"error_{e.error_type}" for e in TRACKED_ERRORS if e.per_hour >= 0.5)
CAUSE_TYPE = "error_browser_queue_timeout"

# ---------------------------------------------------------------------------------------------
# Job failures
# ---------------------------------------------------------------------------------------------

# (error name, message template, phase)
JOB_ERRORS: tuple[tuple[str, str, str], ...] = (
    ("TimeoutError", "Query read timeout after {ms}ms on {table}", "db_query"),
    ("Error", "connect ECONNREFUSED 10.0.{n}.{m}:5432", "db_connect"),
    ("FetchError", "request to https://" + SUPABASE_PROJECT + ".supabase.co/rest/v1/{table}"
                   "?select=* failed, reason: socket hang up", "fetch"),
    ("TypeError", "Cannot read properties of undefined (reading '{prop}')", "process"),
    ("Error", "Browser pool exhausted: 4 contexts busy, waited {ms}ms", "acquire_browser"),
    ("PostgrestError", "duplicate key value violates unique constraint \"{table}_pkey\"", "persist"),
    ("AbortError", "The operation was aborted after {ms}ms", "fetch"),
    ("Error", "OpenAI 503 Service Unavailable (request id req_{hex})", "generate"),
)
SKIP_REASONS: tuple[str, ...] = (
    "another instance holds the job lock",
    "memory pressure: rss {n}MB above 1400MB limit",
    "feature flag disabled for this job",
    "runner_mode=false on this instance",
)
TABLES = (
    "content_metadata", "system_events", "job_heartbeats", "posting_attempts", "reply_opportunities",
    "outcomes", "post_attempts", "rate_controller_state",
)
PROPS = ("tweet_id", "length", "decision_id", "metrics", "0", "content", "author_handle")

_FRAMES = (
    "PostingExecutor.postSingle (/app/dist/src/posting/executor.js:{n}:19)",
    "async processDecision (/app/dist/src/jobs/postingQueue.js:{n}:7)",
    "async BrowserPool.withContext (/app/dist/src/browser/pool.js:{n}:24)",
    "async JobManager.runJob (/app/dist/src/jobs/jobManager.js:{n}:11)",
    "async ReplyScheduler.tick (/app/dist/src/reply_v2/scheduler.js:{n}:15)",
    "PostgrestBuilder.then (/app/node_modules/@supabase/postgrest-js/dist/cjs/PostgrestBuilder.js:{n}:9)",
    "async Promise.all (index 0)",
    "Timeout._onTimeout (/app/node_modules/playwright-core/lib/utils/timeoutRunner.js:{n}:21)",
    "process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
)


def stack_trace(rng: random.Random, error_name: str, message: str) -> str:
    """A Node.js stack, cut to 300-500 characters as the writers do."""
    frames = rng.sample(_FRAMES, k=5)
    text = f"{error_name}: {message}\n" + "\n".join(
        "    at " + frame.format(n=rng.randint(20, 900)) for frame in frames
    )
    return text[: rng.randint(300, 500)]


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_MAKERS: dict[str, Callable[[random.Random], object]] = {
    "ms": lambda rng: rng.choice((5000, 10000, 15000, 30000, 45000, 60000)) + rng.randint(0, 999),
    "n": lambda rng: rng.randint(2, 120),
    "m": lambda rng: rng.randint(2, 250),
    "attempt": lambda rng: rng.randint(1, 3),
    "queue": lambda rng: rng.randint(5, 15),
    "op": lambda rng: "".join(rng.choices(_ALPHABET, k=22)),
    "table": lambda rng: rng.choice(TABLES),
    "prop": lambda rng: rng.choice(PROPS),
    "hex": lambda rng: f"{rng.getrandbits(64):016x}",
    "author": lambda rng: rng.choice(TARGET_AUTHORS),
    "tweet": lambda rng: str(rng.getrandbits(60) + 1_800_000_000_000_000_000),
    "handle": lambda rng: BOT_HANDLE,
    "generator": lambda rng: rng.choice(GENERATORS),
    "decision": lambda rng: "unknown",
}


@cache
def _placeholders(template: str) -> tuple[str, ...]:
    return tuple(name for _, name, _, _ in Formatter().parse(template) if name)


def fill(template: str, rng: random.Random, **known: object) -> str:
    """Fill a message template with plausible numbers and names (only those it uses)."""
    values = {name: known[name] if name in known else _MAKERS[name](rng)
              for name in _placeholders(template)}
    return template.format(**values)


def tweet_url(tweet_id: str, handle: str = BOT_HANDLE) -> str:
    return f"https://x.com/{handle}/status/{tweet_id}"


# ---------------------------------------------------------------------------------------------
# The families of source-schema.md, as event-type patterns (SQL LIKE syntax), for tests and docs
# ---------------------------------------------------------------------------------------------

EVENT_FAMILIES: dict[str, tuple[str, ...]] = {
    "post lifecycle": ("POST_ATTEMPT", "posting_attempt_started", "POST_SUCCESS", "REPLY_SUCCESS",
                       "POST_FAILED", "REPLY_FAILED", "posting_attempt_failed",
                       "POST_ID_CAPTURE_FAILED", "CREATE_TWEET_226_BLOCKED"),
    "queue gates": ("POSTING_QUEUE_BLOCKED", "POSTING_QUEUE_TICK", "REPLY_QUEUE_BLOCKED",
                    "REPLY_QUEUE_TICK"),
    "job health": ("%_job_execution_failed", "%_consecutive_failures", "timer_scheduled",
                   "timer_fired", "job_watchdog_hung", "job_watchdog_stuck", "production_watchdog_%"),
    "error tracker": ("error_null_tweet_id", "error_post_failure", "error_browser_queue_timeout",
                      "error_database_save_failed", "error_rate_limit_exception",
                      "critical_error_alert", "error_spike_alert"),
    "circuit breaker / rate limit": ("circuit_breaker_stuck", "circuit_breaker_forced_reset",
                                     "circuit_breaker_watchdog_alert", "EXECUTOR_RATE_LIMIT_DETECTED",
                                     "EXECUTOR_RATE_LIMIT_ACTIVE", "EXECUTOR_RATE_LIMIT_CLEARED"),
    "executor health": ("EXECUTOR_DAEMON_TICK", "EXECUTOR_HEALTH_OK", "MEMORY_WATCHDOG_CLEANUP"),
    "reply system": ("reply_v2_%", "scheduler_outcome", "reply_slo_violation", "reply_gate_blocked"),
    "verification": ("verification_failed", "truth_integrity_%"),
}
