"""One alert tick: rules → ledger → outbox → channels, as one plain function the sensors, the CLI
and the demo all call.

A tick at a given ``now`` is idempotent: the ledger returns the same transitions for the same
``now`` (see ``ledger.py``) and the outbox keeps one row per (transition, channel), so a retried
sensor tick or a restarted daemon sends nothing twice. Delivery also retries whatever an earlier
tick could not send (a channel that was down gets its backlog in order).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from orchestration.lib.alerts import ledger, outbox
from orchestration.lib.alerts.channels import Channel
from orchestration.lib.alerts.notification import REPORT, Notification
from orchestration.lib.alerts.rules import Grouping, RuleSpec, load_grouping, load_rules
from orchestration.lib.settings import PROJECT_ROOT, Location

RULES_FILE_ENV = "OPS_ALERT_RULES_FILE"
SILENCES_FILE_ENV = "OPS_ALERT_SILENCES_FILE"
DAGSTER_URL_ENV = "OPS_DAGSTER_URL"
DEFAULT_RULES_FILE = PROJECT_ROOT / "alerts" / "rules.yml"
DEFAULT_SILENCES_FILE = PROJECT_ROOT / "alerts" / "silences.yml"
STALENESS_RULES = ("stale_job", "stale_source")
DIGEST_HOUR = 8  # UTC: the daily digest of the previous 24 hours goes out at the first tick from then


@dataclass
class TickResult:
    now: datetime
    rules_evaluated: list[str]
    rule_errors: dict[str, str]
    notifications: list[Notification]
    enqueued: int
    delivery: outbox.DeliverySummary
    firing: list[tuple[str, str, str]] = field(default_factory=list)  # (rule, subject, severity)

    def summary_line(self) -> str:
        d = self.delivery
        return (f"{len(self.rules_evaluated)} rules, {len(self.firing)} firing, "
                f"{len(self.notifications)} notifications, {self.enqueued} queued, sent {d.sent}, "
                f"failed {d.failed}, pending {d.pending}"
                + (f"; rule errors: {', '.join(sorted(self.rule_errors))}" if self.rule_errors else ""))


def rules_file() -> Path:
    return Path(os.environ.get(RULES_FILE_ENV) or DEFAULT_RULES_FILE)


def silences_file() -> Path:
    return Path(os.environ.get(SILENCES_FILE_ENV) or DEFAULT_SILENCES_FILE)


CHANNEL_NAMES = ("file", "slack", "webhook", "email")  # what a rule's routing may name


def configured_rules() -> list[RuleSpec]:
    """The built-in rules with the rules file's overrides and custom rules (validated). Routing
    may name any channel kind, enabled here or not: a route to a disabled channel sends nothing."""
    path = rules_file()
    return load_rules(path if path.exists() else None, channels=CHANNEL_NAMES)


def configured_grouping() -> Grouping:
    """The rules file's ``grouping:`` (incident groups of paging notifications), or the defaults."""
    path = rules_file()
    return load_grouping(path if path.exists() else None)


def floor_time(at: datetime, step: timedelta) -> datetime:
    """``at`` rounded down to a multiple of ``step`` since the epoch: a retried or restarted timer
    tick inside one step evaluates at the same instant, so it changes nothing."""
    at = at.astimezone(timezone.utc)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((at - epoch) // step) * step


def dagster_asset_url(asset_key: str) -> str:
    """An asset's page in the Dagster UI (``$OPS_DAGSTER_URL``, default the local ``make dev``
    address)."""
    base = (os.environ.get(DAGSTER_URL_ENV) or "http://localhost:3000").rstrip("/")
    return f"{base}/assets/{asset_key}"


def asset_url(rule: str) -> str | None:
    """The Dagster UI page of the mart a built-in rule reads."""
    relations = ledger.BUILTIN_EVALUATORS.get(rule, ((), None))[0]
    marts = [r.split(".", 1)[1] for r in relations if not r.startswith("raw.")]
    return dagster_asset_url(marts[0]) if marts else None


def run_tick(location: Location, now: datetime, channels: list[Channel], rules: list[RuleSpec] | None = None,
             only: Iterable[str] | None = None, silences_path: Path | None = None,
             deliver: bool = True, grouping: Grouping | None = None) -> TickResult:
    """Evaluate ``rules`` (or the configured ones; ``only`` restricts them by name) at ``now``,
    record the transitions, queue the notifications for ``channels`` and deliver what is due.
    ``grouping``: the incident grouping (default: the rules file's)."""
    rules = configured_rules() if rules is None else rules
    grouping = configured_grouping() if grouping is None else grouping
    # every digest rule, not just those of this tick: the timer's tick (staleness rules only) and
    # the sensor's hand the same digest, whichever comes first after DIGEST_HOUR
    digest_rules = {r.name for r in rules if r.delivery == "digest"}
    if only is not None:
        wanted = set(only)
        rules = [r for r in rules if r.name in wanted]
    silences_path = silences_file() if silences_path is None else silences_path
    file_silences = ledger.load_silences(silences_path) if silences_path.exists() else []
    notes, obs = ledger.run_alerts(location, rules, now, silences=file_silences, grouping=grouping)
    notes = [n if n.asset_url else dataclasses.replace(n, asset_url=asset_url(n.rule)) for n in notes]
    notes = [n for n in notes if n.rule not in digest_rules]  # recorded in the ledger, sent in the digest
    if digest_rules:
        digest = daily_digest(location, digest_rules, now)
        notes += [digest] if digest is not None else []
    enqueued = outbox.enqueue(location, notes, channels, now) if notes else 0
    delivery = outbox.deliver(location, channels, now) if deliver else outbox.DeliverySummary()
    severity = {r.name: r.severity for r in rules}
    firing = sorted((c.rule, c.subject, severity.get(c.rule, "")) for c in obs.conditions if c.active)
    return TickResult(now, [r.name for r in obs.evaluated], obs.errors, notes, enqueued, delivery, firing)


def digest_period(now: datetime, hour: int = DIGEST_HOUR) -> tuple[datetime, datetime]:
    """The 24 hours the digest due at ``now`` covers: up to the last ``hour`` o'clock (UTC)."""
    now = now.astimezone(timezone.utc)
    end = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    end = end if end <= now else end - timedelta(days=1)
    return end - timedelta(days=1), end


def daily_digest(location: Location, rules: set[str], now: datetime, hour: int = DIGEST_HOUR) -> Notification | None:
    """One message with the alert episodes of the digest ``rules`` that fired in the last digest
    period (per rule: episodes, subjects, the first and the last); None when there were none.

    Its transition id is derived from the period, so each tick of the day hands the same
    notification and the outbox sends it once per channel (like a report)."""
    start, end = digest_period(now, hour)
    ledger.ensure_schema(location)
    marks = ", ".join("?" for _ in rules)
    from orchestration.lib.db import connect

    p = "%s" if location.is_postgres else "?"
    sql = (f"""select l.rule, l.subject, min(t.transition_at), max(t.transition_at), count(*)
               from {ledger.TRANSITIONS} t join {ledger.LEDGER} l on l.alert_id = t.alert_id
               where t.kind = 'fired' and t.transition_at >= {p} and t.transition_at < {p}
                 and l.rule in ({marks})
               group by l.rule, l.subject order by l.rule, l.subject""").replace("?", p)
    with connect(location) as conn:
        rows = conn.execute(sql, [start, end, *sorted(rules)]).fetchall()
    if not rows:
        return None
    per_rule: dict[str, list[tuple]] = {}
    for rule, subject, first, last, n in rows:
        per_rule.setdefault(rule, []).append((subject, first, last, n))
    episodes = sum(r[4] for r in rows)
    lines = [f"- {rule}: {sum(x[3] for x in subs)} episodes; "
             + ", ".join(f"{subj} x{n}" for subj, _f, _l, n in subs[:8]) + (" ..." if len(subs) > 8 else "")
             for rule, subs in per_rule.items()]
    tid = "dig_" + hashlib.sha256(f"digest|{start.isoformat()}".encode()).hexdigest()[:24]
    return Notification(
        transition_id=tid, rule="digest", subject="daily", severity="info", status=REPORT,
        title=f"Daily alert digest {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: {episodes} alert episodes "
              f"of {len(per_rule)} rules",
        summary="Rules delivered as a daily digest (alerts/rules.yml `delivery: digest`):\n" + "\n".join(lines),
        since=start, at=end, numbers={"episodes": episodes, "rules": len(per_rule)},
        labels={"digest": "daily"}, group_key=tid)


__all__ = ["DIGEST_HOUR", "STALENESS_RULES", "daily_digest", "digest_period", "TickResult", "asset_url",
           "configured_grouping", "configured_rules", "dagster_asset_url", "floor_time",
           "rules_file", "run_tick", "silences_file"]
