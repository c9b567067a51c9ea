"""The alert outbox: durable, ordered, at-least-once delivery of notifications to channels.

``alerts.outbox`` in the warehouse (DuckDB file or PostgreSQL) holds one row per
(ledger transition, channel). A sensor tick does two things, each safe to repeat:

1. :func:`enqueue` — insert the tick's notifications for every enabled channel. The unique key
   ``(transition_id, channel)`` makes it idempotent: a retried tick (or a ledger handing the same
   transition again) inserts nothing twice, whether the first row is still pending or delivered.
2. :func:`deliver` — per channel, send the pending rows **oldest first** (by ``id``, which grows
   with every insert). Consecutive rows with the same ``group_key`` go out as one message (up to
   the channel's ``max_group``). What happens on a failure depends on its kind (the channel says,
   see ``channels.is_permanent``):

   - **transient** (5xx, 429, timeouts, connection errors, the send deadline): the channel stops
     for this call — later rows wait behind the failed one, so order is kept — the failed rows get
     ``attempts + 1``, a redacted ``last_error`` and ``next_attempt_at = now + backoff``; the other
     channels carry on. After ``max_attempts`` attempts (``$OPS_ALERT_MAX_ATTEMPTS``, default 12:
     about 75 minutes of retries at the default backoff, so an hour-long outage loses nothing) a
     row is dead-lettered instead.
   - **permanent** (4xx, a redirect, a refused URL scheme, an unbuildable message): a message of
     several notifications is split and each is sent alone, at once, so one poison notification
     cannot sink its group; a single notification that fails permanently is dead-lettered.

   A dead letter (``dead_lettered_at`` set, ``last_error`` kept) is out of the queue: it never
   blocks its channel — the rows after it go out in the same call — and it is never retried
   until :func:`replay` puts it back (``ops-warehouse alerts replay``). A row whose payload cannot
   even be read is dead-lettered without a send.

   A channel whose oldest pending row is not due yet (``next_attempt_at > now``) is skipped. A
   channel that was down for an hour thus gets its whole backlog, in order, at its first due
   attempt after it comes back (the backoff is capped, by default at 10 minutes).

Guarantee: **at-least-once**, for everything that is not dead-lettered. A row is marked delivered
only after the channel's ``send`` has returned, in its own commit, message by message. If the
process dies between a successful send and that commit, the next ``deliver`` sends that one
message again: a crash can duplicate at most the single message in flight per channel, never
anything already marked. Nothing is dropped silently: a dead letter stays in the table, with its
error, shown by ``ops-warehouse alerts status`` until it is replayed. Each send is bounded by the
channels' whole-send deadline, so one call takes at most about one deadline per channel plus the
sends that succeed.

On PostgreSQL a session advisory lock makes concurrent ``deliver`` calls wait for each other's
turn rather than send the same rows twice (a DuckDB file has one writer process anyway).
Delivered rows are kept (they are the idempotency record); :func:`prune` removes old ones — a
transition re-enqueued after its row was pruned would be sent again, so keep the retention longer
than the ledger could ever re-emit a transition.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from orchestration.lib.alerts.channels import (
    Channel,
    is_permanent,
    notification_from_dict,
    notification_to_dict,
    one_line,
    redact,
)
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
        dead_lettered_at timestamptz,
        unique (transition_id, channel)
    )""",
    f"create index if not exists outbox_channel_pending on {TABLE} (channel, delivered_at, id)",
]

MAX_ATTEMPTS_ENV = "OPS_ALERT_MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 12  # ~75 min of retries at the default backoff: an hour-long outage loses nothing
PENDING = "delivered_at is null and dead_lettered_at is null"
DEAD = "delivered_at is null and dead_lettered_at is not null"


def max_attempts_from_env(environ: Mapping[str, str] | None = None) -> int:
    """Attempts before a transiently failing row is dead-lettered (``$OPS_ALERT_MAX_ATTEMPTS``, default 12)."""
    env = os.environ if environ is None else environ
    raw = (env.get(MAX_ATTEMPTS_ENV) or "").strip()
    if not raw:
        return DEFAULT_MAX_ATTEMPTS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"${MAX_ATTEMPTS_ENV}={raw!r}: expected a whole number of attempts") from None
    if value < 1:
        raise ValueError(f"${MAX_ATTEMPTS_ENV}={raw!r}: must be at least 1")
    return value


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
    failed: int = 0  # notifications whose send failed transiently and will be retried (0 or one message's worth)
    dead_lettered: int = 0  # notifications moved to the dead letters by this call
    pending: int = 0  # notifications still queued (neither delivered nor dead) after this call
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

    @property
    def dead_lettered(self) -> int:
        return sum(c.dead_lettered for c in self.channels.values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: {"sent": c.sent, "messages": c.messages, "failed": c.failed,
                       "dead_lettered": c.dead_lettered, "pending": c.pending,
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


def _migrate(conn: _Conn) -> None:
    """Add the columns newer releases need to an outbox created by an older one (only when they
    are missing: an ``alter table`` on PostgreSQL takes the table's exclusive lock)."""
    have = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [SCHEMA, TABLE.split(".", 1)[1]]).fetchall()}
    if "dead_lettered_at" not in have:
        conn.execute(f"alter table {TABLE} add column dead_lettered_at timestamptz")


def ensure_outbox(location: Location) -> None:
    """Create ``alerts.outbox`` (and its schema and id sequence) if missing."""
    with _connect(location) as conn:
        _ensure(conn)


def _ensure(conn: _Conn) -> None:
    """The DDL only for what is missing: on PostgreSQL ``create schema if not exists`` needs CREATE
    on the database and ``create index if not exists`` ownership of the table even when they exist,
    and the alert evaluator role writes rows in the loader's tables but owns none of them."""
    with conn.transaction():
        table_exists = conn.execute(
            "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
            [SCHEMA, TABLE.split(".", 1)[1]]).fetchall()
        if not table_exists:
            schema_exists = conn.execute("select 1 from information_schema.schemata where schema_name = ?",
                                         [SCHEMA]).fetchall()
            for stmt in DDL:
                if not (schema_exists and stmt.startswith("create schema")):
                    conn.execute(stmt)
        _migrate(conn)


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


def _error_text(e: BaseException, channel: Channel) -> str:
    """The failure as stored and logged: one line, redacted of the channel's secrets, bounded."""
    secrets = list(channel.secret_envs()) if hasattr(channel, "secret_envs") else []
    return redact(one_line(str(e) or type(e).__name__), secrets)[:2000]


def _deliver_channel(conn: _Conn, channel: Channel, now: datetime, max_batch: int,
                     backoff: Backoff, max_attempts: int) -> ChannelSummary:
    name = channel.name
    summary = ChannelSummary()
    with conn.transaction():
        rows = conn.execute(
            f"select id, transition_id, group_key, payload, attempts, next_attempt_at from {TABLE}"
            f" where channel = ? and {PENDING} order by id limit {int(max_batch)}",
            [name]).fetchall()
    if rows:
        head_due = rows[0][5]
        if head_due is not None and _utc(head_due) > now:
            summary.skipped_until = _utc(head_due)
            rows = []

    def dead_letter(group: list[tuple], error: str, why: str) -> None:
        ids = [r[0] for r in group]
        with conn.transaction():
            conn.execute(
                f"update {TABLE} set attempts = attempts + 1, last_error = ?, dead_lettered_at = ?,"
                f" next_attempt_at = null where id in ({_placeholders(len(ids))})", [error, now, *ids])
        summary.dead_lettered += len(group)
        summary.last_error = error
        log.error("alert channel %s: %d notification(s) dead-lettered (%s; ids %s): %s",
                  name, len(group), why, ",".join(map(str, ids)), error)

    # read every payload first: a row that cannot be read is dead-lettered alone, not with its group
    readable: list[tuple] = []
    for row in rows:
        try:
            notification_from_dict(json.loads(row[3]))
        except Exception as e:  # noqa: BLE001 - a corrupt row must not block its channel
            dead_letter([row], _error_text(ValueError(f"{name}: unreadable payload: {type(e).__name__}: {e}"),
                                           channel), "unreadable payload")
            continue
        readable.append(row)

    max_group = max(1, int(getattr(channel, "max_group", max_batch) or max_batch))
    queue = list(_groups(readable, max_group))
    while queue:
        group = queue.pop(0)
        ids = [r[0] for r in group]
        batch = [notification_from_dict(json.loads(r[3])) for r in group]
        try:
            channel.send(batch)
        except Exception as e:  # noqa: BLE001 - any failure: classify it, record it
            error = _error_text(e, channel)
            if is_permanent(e):
                if len(group) > 1:  # find the poison: each member alone, now, in order
                    log.warning("alert channel %s: a message of %d notifications failed permanently; "
                                "sending them one by one: %s", name, len(group), error)
                    queue[0:0] = [[r] for r in group]
                    continue
                dead_letter(group, error, "permanent failure")
                continue  # a dead letter never blocks the channel
            spent = [r for r in group if r[4] + 1 >= max_attempts]
            if spent:
                dead_letter(spent, error, f"{max_attempts} attempts")
            retry = [r for r in group if r[4] + 1 < max_attempts]
            if not retry:
                continue
            rids = [r[0] for r in retry]
            attempts = max(r[4] for r in retry) + 1
            due = now + backoff.delay(attempts)
            with conn.transaction():
                conn.execute(
                    f"update {TABLE} set attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                    f" where id in ({_placeholders(len(rids))})", [error, due, *rids])
            summary.failed = len(retry)
            summary.last_error = error
            log.warning("alert channel %s: send failed (attempt %d of %d, retry at %s): %s",
                        name, attempts, max_attempts, due.isoformat(), error)
            break  # transient: later rows wait behind this one, in order
        # mark delivered only now that send returned (a crash right here resends this message)
        with conn.transaction():
            conn.execute(
                f"update {TABLE} set delivered_at = ?, attempts = attempts + 1, next_attempt_at = null"
                f" where id in ({_placeholders(len(ids))})", [now, *ids])
        summary.sent += len(group)
        summary.messages += 1
    with conn.transaction():
        summary.pending = conn.execute(
            f"select count(*) from {TABLE} where channel = ? and {PENDING}", [name]).fetchone()[0]
    return summary


def deliver(location: Location, channels: Iterable[Channel], now: datetime, max_batch: int = 100,
            backoff: Backoff | None = None, max_attempts: int | None = None) -> DeliverySummary:
    """Send what is due, per channel, oldest first; returns sent / failed / dead-lettered / pending
    per channel.

    ``max_batch`` bounds the rows taken per channel per call (the rest wait for the next call).
    ``max_attempts`` (default ``$OPS_ALERT_MAX_ATTEMPTS`` or 12) bounds the attempts of a row that
    fails transiently before it is dead-lettered.
    """
    now = _utc(now)
    backoff = backoff or Backoff()
    max_attempts = max_attempts_from_env() if max_attempts is None else max(1, int(max_attempts))
    summary = DeliverySummary()
    with _connect(location) as conn:
        _ensure(conn)
        if conn.pg:
            conn.execute("select pg_advisory_lock(?)", [PG_DELIVER_LOCK_KEY])
            conn.commit()
        try:
            for channel in channels:
                try:
                    summary.channels[channel.name] = _deliver_channel(conn, channel, now, max_batch, backoff,
                                                                      max_attempts)
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


def dead_letters(location: Location, channel: str | None = None) -> list[dict[str, Any]]:
    """The dead-lettered rows (oldest first): id, transition_id, channel, group_key, attempts,
    enqueued_at, dead_lettered_at, last_error (redacted when stored)."""
    cols = ["id", "transition_id", "channel", "group_key", "attempts", "enqueued_at", "dead_lettered_at",
            "last_error"]
    with _connect(location) as conn:
        _ensure(conn)
        with conn.transaction():
            where, params = (" and channel = ?", [channel]) if channel else ("", [])
            rows = conn.execute(f"select {', '.join(cols)} from {TABLE} where {DEAD}{where} order by id",
                                params).fetchall()
    return [dict(zip(cols, r)) for r in rows]


def replay(location: Location, channel: str | None = None, ids: Sequence[int] | None = None) -> list[int]:
    """Move dead letters back to the queue — all of them, or those of ``channel`` and/or with the
    given ``ids`` — with their attempts reset and due at once; returns the ids moved.

    Idempotent: a row that is not a dead letter (pending, delivered, already replayed) is left
    alone. A replayed row keeps its place (its id), so it goes out before the rows queued after it;
    its ``last_error`` stays until it is sent or fails again."""
    where, params = [DEAD], []
    if channel:
        where.append("channel = ?")
        params.append(channel)
    if ids:
        where.append(f"id in ({_placeholders(len(ids))})")
        params += [int(i) for i in ids]
    cond = " and ".join(where)
    with _connect(location) as conn:
        _ensure(conn)
        with conn.transaction():
            moved = [r[0] for r in conn.execute(f"select id from {TABLE} where {cond} order by id", params).fetchall()]
            if moved:
                conn.execute(f"update {TABLE} set dead_lettered_at = null, attempts = 0, next_attempt_at = null"
                             f" where id in ({_placeholders(len(moved))})", moved)
    if moved:
        log.info("alert outbox: %d dead letter(s) replayed: ids %s", len(moved), ",".join(map(str, moved)))
    return moved


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
            "next_attempt_at", "delivered_at", "last_error", "dead_lettered_at"]
    with _connect(location) as conn:
        _ensure(conn)
        with conn.transaction():
            where, params = ("where channel = ?", [channel]) if channel else ("", [])
            rows = conn.execute(f"select {', '.join(cols)} from {TABLE} {where} order by id", params).fetchall()
    return [dict(zip(cols, r)) for r in rows]


__all__ = ["Backoff", "ChannelSummary", "DeliverySummary", "dead_letters", "deliver", "enqueue", "ensure_outbox",
           "max_attempts_from_env", "outbox_rows", "prune", "replay"]
