"""The bot's writing habits that break a naive extraction, and the ground truth that records them.

Read from the bot's code (shared/source-schema.md, "What the bot's writers really do"):

- stale_updated_at: 7 of the 14 decision update sites leave updated_at alone (model.UPDATE_SITES);
  the truth lists the decisions whose latest status change is newer than their updated_at.
- deleted_decisions: maintenance scripts delete test posts a day or so after creation, and a
  weekly cleanup deletes one or two decisions left failed or skipped for more than a week.
- backdated_events: a few job events commit 2-8 hours after their created_at, and about one a
  month 3-5 days after (far beyond an extractor's re-read overlap); through ``commit_at``.
- poison_payloads: payload text that PostgreSQL's jsonb refuses (the escape ``\\u0000``), and
  about once a month a payload that is not JSON at all (cut-off text). Only a column that can
  hold them keeps them (simulate.py drops the rest, as the bot's insert would fail).
- bad_event_times: created_at NULL, the Unix epoch (a wrong clock) or 'infinity'.

Everything here is planned from its own random streams, so the rest of the timeline (the main
stream, the incidents, every other row) is the same with the habits on or off. Habit events
that are new rows (poison payloads, bad times) take their ids from their own stream too.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from orchestration.lib.simulator.model import (
    COMMIT_AT,
    DAY,
    EPOCH,
    HOUR,
    INFINITY,
    MINUTE,
    SECOND,
    SITES_WITHOUT_UPDATED_AT,
    Decision,
    EventRow,
    iso,
    to_us,
    uuid4_from,
)

HABIT_KINDS = ("stale_updated_at", "deleted_decisions", "backdated_events", "poison_payloads",
               "bad_event_times")
DECISIONS_TABLE = "content_generation_metadata_comprehensive"
EVENTS_TABLE = "system_events"
MONTH_DAYS = 30

# Rates: per day, or per month for the rare ones (a month of 30 days holds the count shown)
HOURS_LATE_PER_DAY = 0.4  # 12
HOURS_LATE_DELAY = (2 * HOUR, 8 * HOUR)
DAYS_LATE_PER_MONTH = 1
DAYS_LATE_DELAY = (3 * DAY, 5 * DAY)
NUL_ESCAPE_PER_DAY = 0.17  # 5
NOT_JSON_PER_MONTH = 1
NULL_TIME_PER_DAY = 0.15  # 4-5
EPOCH_TIME_PER_MONTH = 1
INFINITE_TIME_PER_MONTH = 1
TEST_POST_DELETED_SHARE = 0.6  # the test-post cleanup's filter catches most of them, not all
TEST_POST_DELETED_AFTER = (DAY, DAY + 12 * HOUR)
OLD_DECISION_AGE = 7 * DAY
OLD_DECISION_STATUSES = frozenset({"failed", "failed_permanent", "skipped", "archived"})
CLEANUP_EVERY = 7 * DAY

# Poison payloads come from one writer that logs the raw API response it could not use.
POISON_EVENT_TYPE = "x_api_response_invalid"
# Bad times come from a writer that copies created_at from its session object: a missing field
# (NULL), 0 (the epoch) or Infinity.
BAD_TIME_EVENT_TYPE = "browser_session_saved"
REFUSED_BY = {  # which poison each payload column type refuses
    "jsonb": frozenset({"nul_escape", "not_json"}),
    "json": frozenset({"not_json"}),
}
NEVER = INFINITY


@dataclass(frozen=True)
class Backdate:
    due: int  # the first job event emitted at or after this moment commits late
    delay: int


class Habits:
    """The habits planned for one timeline, and what the timeline did with them."""

    def __init__(self, *, seed: int, start: int, end: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.start = start
        self.end = end
        days = (end - start) / DAY
        self._backdates: list[Backdate] = (
            _plan_backdates(random.Random(f"{seed}:habits:backdates"), start, end, days) if enabled else [])
        self.next_backdate_due = self._backdates[0].due if self._backdates else NEVER
        self.backdated: list[dict[str, Any]] = []
        self.poison: dict[str, tuple[str, int]] = {}  # event id -> (what is wrong with its payload, when)
        self.bad_times: list[dict[str, Any]] = []
        self._extra: list[EventRow] = []
        if enabled:
            self._plan_extra_events(random.Random(f"{seed}:habits:events"), days)
        self._extra_times = [row[COMMIT_AT] for row in self._extra]
        self._deletion_rng = random.Random(f"{seed}:habits:deletions")
        self.decision_deletions: dict[str, tuple[int, str]] = {}  # decision id -> (deleted_at, reason)
        self.stale: list[tuple[str, int, str]] = []  # (decision id, status changed at, call site)

    # -- back-dated events (the engine's emit asks) --------------------------------------------

    def commit_late(self, event_id: str, event_type: str, writer: str, at: int) -> int:
        """The commit time of the event emitted at ``at`` once a back-date is due."""
        plan = self._backdates.pop(0)
        self.next_backdate_due = self._backdates[0].due if self._backdates else NEVER
        if at + plan.delay >= self.end:
            return at  # it would commit after the period: never visible, so not back-dated
        self.backdated.append({"id": event_id, "event_type": event_type, "writer": writer,
                               "created_at": iso(at), "committed_at": iso(at + plan.delay),
                               "delay_seconds": plan.delay // SECOND})
        return at + plan.delay

    # -- new rows: poison payloads and bad times -----------------------------------------------

    def events_between(self, lo: int, hi: int) -> list[EventRow]:
        """The habit events that happen in [lo, hi)."""
        return self._extra[bisect_left(self._extra_times, lo):bisect_left(self._extra_times, hi)]

    def _plan_extra_events(self, rng: random.Random, days: float) -> None:
        for problem, count in (("nul_escape", _per_day(days, NUL_ESCAPE_PER_DAY)),
                               ("not_json", _per_month(days, NOT_JSON_PER_MONTH))):
            for _ in range(count):
                self._extra.append(self._poison_event(rng, problem))
        reasons = (["null_created_at"] * _per_day(days, NULL_TIME_PER_DAY)
                   + ["epoch_created_at"] * _per_month(days, EPOCH_TIME_PER_MONTH)
                   + ["infinity_created_at"] * _per_month(days, INFINITE_TIME_PER_MONTH))
        for index, reason in enumerate(reasons):
            # the first NULL one lost its timestamp too (a writer that sets both explicitly)
            self._extra.append(self._bad_time_event(rng, reason, timestamp_null=index == 0))
        self._extra.sort(key=lambda row: row[COMMIT_AT])

    def _moment(self, rng: random.Random) -> int:
        return self.start + rng.randrange(self.end - self.start)

    def _poison_event(self, rng: random.Random, problem: str) -> EventRow:
        at, event_id = self._moment(rng), uuid4_from(rng)
        operation = rng.choice(("TweetDetail", "UserTweets", "SearchTimeline"))
        size = rng.randint(2_000, 60_000)
        if problem == "nul_escape":  # six characters: backslash, u, 0, 0, 0, 0
            payload = (f'{{"operation": "{operation}", "status": 200, "bytes": {size}, '
                       f'"error": "bad byte \\u0000 in response"}}')
        else:  # the writer cut the raw body at a fixed length, mid-string
            payload = (f'{{"operation": "{operation}", "status": 200, "bytes": {size}, '
                       f'"body": "{{\\"data\\":{{\\"tweetResult\\":{{\\"result\\":{{\\"rest_id\\":\\"18')
        self.poison[event_id] = (problem, at)
        message = f"X API {operation} response could not be parsed ({size} bytes); raw text kept"
        return (event_id, POISON_EVENT_TYPE, payload, None, "warning", message, None, at, at, at)

    def _bad_time_event(self, rng: random.Random, reason: str, *, timestamp_null: bool) -> EventRow:
        at, event_id = self._moment(rng), uuid4_from(rng)
        created_at = {"null_created_at": None, "epoch_created_at": to_us(EPOCH),
                      "infinity_created_at": INFINITY}[reason]
        saved_at = {"null_created_at": "null", "epoch_created_at": "0", "infinity_created_at": '"Infinity"'}[reason]
        cookies = rng.randint(8, 40)
        payload = (f'{{"session_id": "{rng.getrandbits(48):012x}", "cookies": {cookies}, '
                   f'"saved_at_ms": {saved_at}}}')
        self.bad_times.append({"id": event_id, "reason": reason, "happened_at": iso(at),
                               "timestamp_null": timestamp_null})
        return (event_id, BAD_TIME_EVENT_TYPE, payload, None, "info",
                f"Browser session saved ({cookies} cookies)", None, None if timestamp_null else at,
                created_at, at)

    def refused_ids(self, payload_type: str) -> set[str]:
        """The poison events a payload column of this type refuses (the bot's insert fails)."""
        refused = REFUSED_BY.get(payload_type, frozenset())
        return {event_id for event_id, (problem, _) in self.poison.items() if problem in refused}

    # -- after the run: deleted decisions and stale updated_at ---------------------------------

    def after_run(self, decisions: list[Decision]) -> None:
        if not self.enabled:
            return
        self._plan_test_post_deletions(decisions)
        self._plan_old_decision_cleanups(decisions)
        kept = (d for d in decisions if d.decision_id not in self.decision_deletions)
        self.stale = [entry for d in kept if (entry := _stale_entry(d, self.end)) is not None]

    def _plan_test_post_deletions(self, decisions: list[Decision]) -> None:
        rng = self._deletion_rng
        for decision in decisions:
            # burst decisions are counted in an incident's truth: keep that count exact
            if not decision.is_test_post or decision.in_null_burst:
                continue
            caught = rng.random() < TEST_POST_DELETED_SHARE
            deleted_at = decision.created_at + rng.randrange(*TEST_POST_DELETED_AFTER)
            if caught and deleted_at < self.end:
                self.decision_deletions[decision.decision_id] = (deleted_at, "test_post_cleanup")

    def _plan_old_decision_cleanups(self, decisions: list[Decision]) -> None:
        rng = self._deletion_rng
        run = self.start + rng.randrange(CLEANUP_EVERY)
        while run < self.end:
            candidates = [d for d in decisions if d.created_at < run
                          and d.decision_id not in self.decision_deletions
                          and d.history[-1].at < run - OLD_DECISION_AGE
                          and d.status in OLD_DECISION_STATUSES]
            for decision in rng.sample(candidates, min(len(candidates), rng.randint(1, 2))):
                self.decision_deletions[decision.decision_id] = (run, "old_decision_cleanup")
            run += CLEANUP_EVERY + rng.randint(-6, 6) * HOUR

    # -- truth ---------------------------------------------------------------------------------

    def records(self, payload_type: str) -> list[dict[str, Any]]:
        """The truth, one record per habit kind (none when the habits are off)."""
        if not self.enabled:
            return []
        refused = self.refused_ids(payload_type)
        details = {
            "stale_updated_at": self._stale_details(),
            "deleted_decisions": {
                "count": len(self.decision_deletions),
                "decisions": [{"decision_id": d, "deleted_at": iso(at), "reason": reason}
                              for d, (at, reason) in sorted(self.decision_deletions.items(),
                                                            key=lambda item: item[1])],
            },
            "backdated_events": {
                "count": len(self.backdated),
                "days_late": sum(e["delay_seconds"] >= DAY // SECOND for e in self.backdated),
                "events": self.backdated,
            },
            "poison_payloads": {
                "count": len(self.poison),
                "payload_type": payload_type,
                "stored": len(self.poison) - len(refused),
                "events": [{"id": e, "created_at": iso(at), "problem": problem, "stored": e not in refused}
                           for e, (problem, at) in sorted(self.poison.items(), key=lambda item: item[1][1])],
            },
            "bad_event_times": {"count": len(self.bad_times),
                                "events": sorted(self.bad_times, key=lambda e: e["happened_at"])},
        }
        subjects = {"stale_updated_at": DECISIONS_TABLE, "deleted_decisions": DECISIONS_TABLE}
        return [{"incident_id": f"habit-{kind}", "kind": kind, "start": iso(self.start), "end": iso(self.end),
                 "subject": subjects.get(kind, EVENTS_TABLE), "details": details[kind]} for kind in HABIT_KINDS]

    def _stale_details(self) -> dict[str, Any]:
        by_site: dict[str, int] = {}
        for _, _, site in self.stale:
            by_site[site] = by_site.get(site, 0) + 1
        return {"count": len(self.stale), "sites_without_updated_at": list(SITES_WITHOUT_UPDATED_AT),
                "by_call_site": dict(sorted(by_site.items())),
                # decision id -> when its latest status change happened (updated_at is older)
                "changed_at": {decision_id: iso(at) for decision_id, at, _ in self.stale}}


def _stale_entry(decision: Decision, end: int) -> tuple[str, int, str] | None:
    """The decision's latest status change in the period, when it left updated_at older."""
    state = decision.state_as_of(end)
    changes = decision.changes_before(end)
    if state is None or not changes or changes[-1].at <= state["updated_at"]:
        return None  # (every change sets status)
    return decision.decision_id, changes[-1].at, changes[-1].site


def _per_day(days: float, rate: float) -> int:
    return _round_half_up(days * rate)


def _per_month(days: float, per_month: float) -> int:
    return _round_half_up(days / MONTH_DAYS * per_month)


def _round_half_up(count: float) -> int:
    """(round() would make half a month's rare habit 0 and one and a half 2.)"""
    return math.floor(count + 0.5)


def _plan_backdates(rng: random.Random, start: int, end: int, days: float) -> list[Backdate]:
    """When a job's event will commit late, and by how much; each fits well inside the period."""
    plans = []
    for count, (shortest, longest) in ((_per_day(days, HOURS_LATE_PER_DAY), HOURS_LATE_DELAY),
                                       (_at_least_one_a_month(days), DAYS_LATE_DELAY)):
        for _ in range(count):
            delay = rng.randint(shortest // MINUTE, longest // MINUTE) * MINUTE + rng.randrange(MINUTE)
            latest_due = end - delay - 2 * HOUR  # room for the emit that takes it, and its commit
            if latest_due > start:
                plans.append(Backdate(start + rng.randrange(latest_due - start), delay))
    return sorted(plans, key=lambda plan: plan.due)


def _at_least_one_a_month(days: float) -> int:
    """Days-late commits: one per month, and one in any period long enough to show one."""
    return max(_per_month(days, DAYS_LATE_PER_MONTH), 1 if days > DAYS_LATE_DELAY[1] / DAY + 1 else 0)
