"""The alert outbox: durable, ordered, at-least-once delivery of notifications to channels.

``alerts.outbox`` in the warehouse (DuckDB file or PostgreSQL) holds one row per
(ledger transition, channel). A sensor tick does two things, each safe to repeat:

1. :func:`enqueue` — insert the tick's notifications for every enabled channel. The unique key
   ``(transition_id, channel)`` makes it idempotent: a retried tick (or a ledger handing the same
   transition again) inserts nothing twice, whether the first row is still pending or delivered.
2. :func:`deliver` — per channel, send the pending rows **oldest first** (by ``id``, which grows
   with every insert). Consecutive rows with the same ``group_key`` go out as one message (up to
   the channel's ``max_group``). On the first failure the channel stops for this call — later rows
   wait behind the failed one, so order is kept — the failed rows get ``attempts + 1``, a redacted
   ``last_error`` and ``next_attempt_at = now + backoff``; the other channels carry on. A channel
   whose oldest pending row is not due yet (``next_attempt_at > now``) is skipped. A channel that
   was down for an hour thus gets its whole backlog, in order, at its first due attempt after it
   comes back (the backoff is capped, by default at 10 minutes).

Guarantee: **at-least-once**. A row is marked delivered only after the channel's ``send`` has
returned, in its own commit, message by message. If the process dies between a successful send
and that commit, the next ``deliver`` sends that one message again: a crash can duplicate at most
the single message in flight per channel, never anything already marked. Nothing is ever dropped:
there is no maximum number of attempts (a failing row keeps retrying at the capped backoff and
blocks its channel, visibly, through ``last_error``).

On PostgreSQL a session advisory lock makes concurrent ``deliver`` calls wait for each other's
turn rather than send the same rows twice (a DuckDB file has one writer process anyway).
Delivered rows are kept (they are the idempotency record); :func:`prune` removes old ones — a
transition re-enqueued after its row was pruned would be sent again, so keep the retention longer
than the ledger could ever re-emit a transition.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from orchestration.lib.alerts.channels import Channel, notification_from_dict, notification_to_dict, redact
from orchestration.lib.alerts.notification import Notification
from orchestration.lib.db import duckdb_connect, postgres_connect
from orchestration.lib.settings import Location

log = logging.getLogger(__name__)

SCHEMA = "alerts"
TABLE = f"{SCHEMA}.outbox"
SEQUENCE = f"{SCHEMA}.outbox_id_seq"
PG_DELIVER_LOCK_KEY = 0x0A1E_0B0C  # pg advisory lock key for deliver()

DDL = [
    f"create schema if not exists {SCHEMA}",
    f"create sequence if not exists {SEQUENCE}",
    f"""create table if not exists {TABLE} (
        id bigint primary key default nextval('{SEQUENCE}'),
        transition_id text not null,
        channel text not null,
        group_key text,
        payload text not null,
        enqueued_at timestamptz not null,
        attempts integer not null default 0,
        next_attempt_at timestamptz,
        delivered_at timestamptz,
        last_error text,
        unique (transition_id, channel)
    )""",
    f"create index if not exists outbox_channel_pending on {TABLE} (channel, delivered_at, id)",
]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: attempt n (1-based) waits ``min(cap, base * factor ** (n - 1))``."""

    base_s: float = 30.0
    factor: float = 2.0
    cap_s: float = 600.0

    def delay(self, attempts: int) -> timedelta:
        n = max(1, attempts)
        return timedelta(seconds=min(self.cap_s, self.base_s * self.factor ** (n - 1)))


@dataclass
class ChannelSummary:
    sent: int = 0  # notifications delivered by this call
    messages: int = 0  # messages sent by this call
    failed: int = 0  # notifications in the message that failed (0 or one message's worth)
    pending: int = 0  # notifications still undelivered after this call
    skipped_until: datetime | None = None  # set when the channel was not due yet
    last_error: str | None = None  # redacted


@dataclass
class DeliverySummary:
    channels: dict[str, ChannelSummary] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.channels.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.channels.values())

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self.channels.values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: {"sent": c.sent, "messages": c.messages, "failed": c.failed, "pending": c.pending,
                       "skipped_until": c.skipped_until.isoformat() if c.skipped_until else None,
                       "last_error": c.last_error}
                for name, c in self.channels.items()}


# ---------------------------------------------------------------------------------------------
# a tiny portable connection wrapper (``?`` placeholders on both engines)


class _Conn:
    def __init__(self, location: Location) -> None:
        self.pg = location.is_postgres
        self.raw = postgres_connect(location) if self.pg else duckdb_connect(location)

    def execute(self, sql: str, params: Sequence[Any] = ()):
        if self.pg:
            return self.raw.execute(sql.replace("?", "%s"), list(params))
        return self.raw.execute(sql, list(params))

    def begin(self) -> None:
        if not self.pg:
            self.raw.execute("begin transaction")
        # psycopg (not autocommit) opens a transaction with the first statement

    def commit(self) -> None:
        if self.pg:
            self.raw.commit()
        else:
            self.raw.execute("commit")

    def rollback(self) -> None:
        if self.pg:
            self.raw.rollback()
        else:
            self.raw.execute("rollback")

    def close(self) -> None:
        self.raw.close()

    @contextmanager
    def transaction(self) -> Iterator["_Conn"]:
        self.begin()
        try:
            yield self
            self.commit()
        except BaseException:
            self.rollback()
            raise


@contextmanager
def _connect(location: Location) -> Iterator[_Conn]:
    conn = _Conn(location)
    try:
        yield conn
    finally:
        conn.close()


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _channel_name(channel: Channel | str) -> str:
    return channel if isinstance(channel, str) else channel.name


def ensure_outbox(location: Location) -> None:
    """Create ``alerts.outbox`` (and its schema and id sequence) if missing."""
    with _connect(location) as conn, conn.transaction():
        for stmt in DDL:
            conn.execute(stmt)


def _ensure(conn: _Conn) -> None:
    with conn.transaction():
        for stmt in DDL:
            conn.execute(stmt)


# ---------------------------------------------------------------------------------------------
# enqueue


def routed_channels(notification: Notification, names: list[str]) -> list[str]:
    """The channels of ``names`` a notification goes to: those its rule routes it to (the ledger
    puts a rule's routing in the label ``channels``, comma-separated), or all of them when the
    rule names none."""
    wanted = {c.strip() for c in notification.labels.get("channels", "").split(",") if c.strip()}
    return [name for name in names if name in wanted] if wanted else names


def enqueue(location: Location, notifications: Iterable[Notification], channels: Iterable[Channel | str],
            now: datetime) -> int:
    """Queue every notification for each of ``channels`` its rule routes it to (all when it names
    none); returns how many rows were new.

    Idempotent on ``(transition_id, channel)``: already queued (or delivered) pairs are left alone.
    All rows of one call commit together, in the order given (their ids grow in that order).
    """
    names = [_channel_name(c) for c in channels]
    notes = list(notifications)
    if not names or not notes:
        return 0
    now = _utc(now)
    inserted = 0
    with _connect(location) as conn:
        _ensure(conn)
        with conn.transaction():
            for n in notes:
                payload = json.dumps(notification_to_dict(n), sort_keys=True)
                for name in routed_channels(n, names):
                    exists = conn.execute(f"select 1 from {TABLE} where transition_id = ? and channel = ?",
                                          [n.transition_id, name]).fetchone()
                    if exists:
                        continue
                    conn.execute(
                        f"insert into {TABLE} (transition_id, channel, group_key, payload, enqueued_at, attempts)"
                        " values (?, ?, ?, ?, ?, 0) on conflict (transition_id, channel) do nothing",
                        [n.transition_id, name, n.group_key, payload, now])
                    inserted += 1
    if inserted:
        log.info("alert outbox: %d new row(s) for %d notification(s) x %d channel(s)",
                 inserted, len(notes), len(names))
    return inserted


# ---------------------------------------------------------------------------------------------
# deliver


def _groups(rows: list[tuple], max_group: int) -> Iterator[list[tuple]]:
    """Consecutive rows with the same (non-null) group_key, at most ``max_group`` per group."""
    group: list[tuple] = []
    for row in rows:
        key = row[2]
        if group and (key is None or key != group[-1][2] or len(group) >= max_group):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _deliver_channel(conn: _Conn, channel: Channel, now: datetime, max_batch: int,
                     backoff: Backoff) -> ChannelSummary:
    name = channel.name
    summary = ChannelSummary()
    with conn.transaction():
        rows = conn.execute(
            f"select id, transition_id, group_key, payload, attempts, next_attempt_at from {TABLE}"
            f" where channel = ? and delivered_at is null order by id limit {int(max_batch)}",
            [name]).fetchall()
    if rows:
        head_due = rows[0][5]
        if head_due is not None and _utc(head_due) > now:
            summary.skipped_until = _utc(head_due)
            rows = []
        max_group = max(1, int(getattr(channel, "max_group", max_batch) or max_batch))
        for group in _groups(rows, max_group):
            ids = [r[0] for r in group]
            batch = [notification_from_dict(json.loads(r[3])) for r in group]
            try:
                channel.send(batch)
            except Exception as e:  # noqa: BLE001 - any failure: record it, stop this channel
                secrets = list(channel.secret_envs()) if hasattr(channel, "secret_envs") else []
                error = redact(str(e) or type(e).__name__, secrets)[:2000]
                attempts = max(r[4] for r in group) + 1
                due = now + backoff.delay(attempts)
                with conn.transaction():
                    conn.execute(
                        f"update {TABLE} set attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                        f" where id in ({_placeholders(len(ids))})", [error, due, *ids])
                summary.failed = len(group)
                summary.last_error = error
                log.warning("alert channel %s: send failed (attempt %d, retry at %s): %s",
                            name, attempts, due.isoformat(), error)
                break
            # mark delivered only now that send returned (a crash right here resends this message)
            with conn.transaction():
                conn.execute(
                    f"update {TABLE} set delivered_at = ?, attempts = attempts + 1, next_attempt_at = null"
                    f" where id in ({_placeholders(len(ids))})", [now, *ids])
            summary.sent += len(group)
            summary.messages += 1
    with conn.transaction():
        summary.pending = conn.execute(
            f"select count(*) from {TABLE} where channel = ? and delivered_at is null", [name]).fetchone()[0]
    return summary


def deliver(location: Location, channels: Iterable[Channel], now: datetime, max_batch: int = 100,
            backoff: Backoff | None = None) -> DeliverySummary:
    """Send what is due, per channel, oldest first; returns sent / failed / pending per channel.

    ``max_batch`` bounds the rows taken per channel per call (the rest wait for the next call).
    """
    now = _utc(now)
    backoff = backoff or Backoff()
    summary = DeliverySummary()
    with _connect(location) as conn:
        _ensure(conn)
        if conn.pg:
            conn.execute("select pg_advisory_lock(?)", [PG_DELIVER_LOCK_KEY])
            conn.commit()
        try:
            for channel in channels:
                try:
                    summary.channels[channel.name] = _deliver_channel(conn, channel, now, max_batch, backoff)
                except Exception:
                    log.exception("alert channel %s: delivery bookkeeping failed", channel.name)
                    raise
        finally:
            if conn.pg:
                try:
                    conn.rollback()
                    conn.execute("select pg_advisory_unlock(?)", [PG_DELIVER_LOCK_KEY])
                    conn.commit()
                except Exception:  # noqa: BLE001 - the lock dies with the session anyway
                    pass
    sent = {k: v.sent for k, v in summary.channels.items() if v.sent}
    if sent:
        log.info("alert delivery: sent %s", sent)
    return summary


def prune(location: Location, delivered_before: datetime) -> int:
    """Delete delivered rows older than ``delivered_before`` (see the module note on retention)."""
    with _connect(location) as conn:
        _ensure(conn)
        with conn.transaction():
            n = conn.execute(f"select count(*) from {TABLE} where delivered_at < ?",
                             [_utc(delivered_before)]).fetchone()[0]
            conn.execute(f"delete from {TABLE} where delivered_at < ?", [_utc(delivered_before)])
    return int(n)


def outbox_rows(location: Location, channel: str | None = None) -> list[dict[str, Any]]:
    """The outbox rows (oldest first), as dicts, for inspection and tests."""
    cols = ["id", "transition_id", "channel", "group_key", "payload", "enqueued_at", "attempts",
            "next_attempt_at", "delivered_at", "last_error"]
    with _connect(location) as conn:
        _ensure(conn)
        with conn.transaction():
            where, params = ("where channel = ?", [channel]) if channel else ("", [])
            rows = conn.execute(f"select {', '.join(cols)} from {TABLE} {where} order by id", params).fetchall()
    return [dict(zip(cols, r)) for r in rows]


__all__ = ["Backoff", "ChannelSummary", "DeliverySummary", "deliver", "enqueue", "ensure_outbox",
           "outbox_rows", "prune"]
