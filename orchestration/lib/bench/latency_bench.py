"""``ops-warehouse bench latency``: event-to-notification latency of the alert fast lane.

Two scratch PostgreSQL databases (a source and a warehouse) are created with the admin DSN. The
simulator's engine (``simulator.follow.LiveTimeline``) simulates the bot from ``--history-hours``
before now to the end of the run, with four incidents placed by hand and played by the simulator's
own incident steps (so their rows are the bot's), and writes the history at once, then follows the
clock: every second the rows whose time has come are written into the source (events at their
commit time, decisions and heartbeats upserted at their state as of now). Meanwhile the fast lane
runs in-process every ``--interval`` seconds: the same extraction, ``dbt build +tag:alert_lane`` and
alert tick (``orchestration.lib.fast_lane.run_fast_lane``) that the Dagster job ``alert_fast_lane``
and the alert sensor run. Notifications go to a file channel in a scratch directory.

The incidents, and from when each is timed (the first row that makes it an incident by its rule's
definition, when that row is written):

- ``circuit_breaker`` (``circuit_breaker_stuck``, rule circuit_breaker / critical_errors): the bot
  logs ``circuit_breaker_stuck`` once the breaker has been open for an hour; the breaker opened an
  hour before, in the history. Timed from the first ``circuit_breaker_stuck`` event.
- ``shutdown`` (``silent_shutdown``, rule system_shutdown): a shutdown is, by the models'
  definition (dbt var ``shutdown_gap_minutes``, 120), no successful post for 120 minutes while the
  bot runs; it began in the history. Timed from the instant the gap reaches 120 minutes (last
  success + 120 min).
- ``error_spike`` (rule errors_per_hour, made a paging rule in the bench's copy of
  alerts/rules.yml, where it is a digest rule; threshold as shipped, "> 25" in a rolling hour):
  ``--spike-errors`` (60) tracked errors of one type over 5 minutes. Timed from the first of them.
- ``null_tweet_id`` (``null_tweet_id_burst``, rule null_tweet_ids, "> 5" an hour, the hour in
  progress prorated): every post of the burst's hour is captured without its tweet id (the
  bot's POST_ID_CAPTURE_FAILED), at the bot's posting pace. Timed from the first of them.

The order keeps every incident out of an ongoing shutdown, which inhibits errors_per_hour and
null_tweet_ids by design: the spike starts at 2 % of the run, the breaker's first stuck event
comes at 5 %, the shutdown becomes one between 25 % and 50 % (its queue hold and the breaker's
began in the history), both end at 60 % (the watchdog resets the breaker; the episode ends at
the first post after it, minutes later at the bot's pace) and the NULL tweet id burst starts
then too: its first post is the one that ends the episode, or a later one. Runs need about 20 minutes
(the default) for the spike's notification to come before the shutdown. Per kind: the latency from the first incident row written to its first
notification in the file channel (p50, p95, max over the incidents of that kind), and misses (no
notification by the end of the run).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import yaml

from orchestration.lib.bench import write_figures
from orchestration.lib.settings import Location

KIND_RULES = {
    "shutdown": ("system_shutdown",),
    "circuit_breaker": ("circuit_breaker", "critical_errors"),
    "error_spike": ("errors_per_hour",),
    "null_tweet_id": ("null_tweet_ids",),
}
SHUTDOWN_GAP = timedelta(minutes=120)  # dbt var shutdown_gap_minutes
# where the incidents sit in a run, as shares of it (module doc)
SPIKE_AT, STUCK_AT, SHUTDOWN_AT, SHUTDOWN_WITHIN, RECOVERED_AT, BURST_AT = 0.02, 0.05, 0.40, (0.25, 0.50), 0.60, 0.60
SPIKE_MINUTES = 5


@dataclass
class Timed:
    kind: str
    incident_id: str
    first_at: datetime | None = None  # the first incident row's time (simulated = wall clock)
    written_at: float | None = None  # wall clock when that row was in the source
    notified_at: float | None = None
    rule: str | None = None

    @property
    def latency(self) -> float | None:
        if self.written_at is None or self.notified_at is None:
            return None
        return max(0.0, self.notified_at - self.written_at)


@dataclass
class Pass:
    started: float
    seconds: float
    extract_seconds: float
    build_seconds: float
    tick_seconds: float
    summary: str


@dataclass
class Run:
    timed: list[Timed] = field(default_factory=list)
    passes: list[Pass] = field(default_factory=list)
    writes: list[tuple[int, float]] = field(default_factory=list)  # (hi in us, wall clock after the write)
    history_rows: dict[str, int] = field(default_factory=dict)
    first_pass_seconds: float = 0.0
    phase: float = 0.0


def _us(at: datetime) -> int:
    from orchestration.lib.simulator.model import to_us

    return to_us(at)


def posts_before_shutdown(tl) -> None:
    """A planner catch-up an hour before the shutdown (decisions due from 40 minutes before it):
    the bot posts until the queue is held, so the last success is minutes before the shutdown
    at any hour of the day (at night this bot may not post for hours)."""
    from orchestration.lib.simulator import background
    from orchestration.lib.simulator.model import MINUTE

    for incident in tl.book.by_kind["silent_shutdown"]:
        tl.schedule(incident.start - 60 * MINUTE, background._planner_catch_up, tl, incident.start - 40 * MINUTE, 6)


def plan(follow_start: datetime, seconds: float, seed: int, shutdown_shift: timedelta = timedelta(0)) -> list:
    """The four incidents of a run of ``seconds`` from ``follow_start`` (see the module doc)."""
    from orchestration.lib.simulator import catalogue as cat
    from orchestration.lib.simulator.incidents import QUEUE_SUBJECT, Incident

    at = lambda share: follow_start + timedelta(seconds=seconds * share)  # noqa: E731
    stuck = at(STUCK_AT)
    breaker_start = stuck - timedelta(minutes=60)
    recovered = at(RECOVERED_AT)
    # the shutdown is one from its last success + 120 min: aimed at SHUTDOWN_AT of the run (the
    # bench shifts it by what the last success turned out to be, shutdown_shift)
    shutdown_start = at(SHUTDOWN_AT) - SHUTDOWN_GAP + timedelta(minutes=8) + shutdown_shift
    spike_start = at(SPIKE_AT)
    burst_start = at(BURST_AT)
    spike_type = cat.SPIKE_TYPES[seed % len(cat.SPIKE_TYPES)]
    errors = int(os.environ.get("OPS_BENCH_SPIKE_ERRORS", "60"))
    baseline = cat.TRACKED_BY_TYPE[spike_type.removeprefix("error_")].per_hour
    burst = Incident("lat-null_tweet_id", "null_tweet_id_burst", _us(burst_start), _us(burst_start + timedelta(hours=1)),
                     "error_null_tweet_id", {"hour": burst_start.isoformat(), "count": 0, "decision_ids": []})
    burst.state["injected"] = 12
    return [
        Incident("lat-circuit_breaker", "circuit_breaker_stuck", _us(breaker_start), _us(recovered), QUEUE_SUBJECT,
                 {"reason": cat.CIRCUIT_BREAKER, "breaker": "posting_executor",
                  "open_minutes": int((recovered - breaker_start).total_seconds() // 60)}),
        Incident("lat-shutdown", "silent_shutdown", _us(shutdown_start), _us(recovered), QUEUE_SUBJECT,
                 {"reason": cat.SHUTDOWN_REASONS[0]}),
        Incident("lat-error_spike", "error_spike", _us(spike_start), _us(spike_start + timedelta(minutes=SPIKE_MINUTES)),
                 spike_type, {"event_type": spike_type, "baseline_per_hour": baseline, "injected_count": errors,
                              "multiplier": round(errors * 60 / SPIKE_MINUTES / baseline, 1)}),
        burst,
    ]


def first_rows(live, incidents: list) -> dict[str, datetime | None]:
    """Per kind, the time of the first row that makes the incident one by its rule's definition."""
    from orchestration.lib.simulator.model import from_us

    by_kind = {i.kind: i for i in incidents}
    events = live.events
    out: dict[str, datetime | None] = {}

    def first(pred) -> datetime | None:
        times = [e[7] for e in events if pred(e)]
        return from_us(min(times)) if times else None

    br = by_kind["circuit_breaker_stuck"]
    out["circuit_breaker"] = first(lambda e: e[1] == "circuit_breaker_stuck" and br.start <= e[7] < br.end)
    sp = by_kind["error_spike"]
    out["error_spike"] = first(lambda e: e[1] == sp.subject and sp.start <= e[7] < sp.end)
    nb = by_kind["null_tweet_id_burst"]
    out["null_tweet_id"] = first(lambda e: e[1] == "POST_ID_CAPTURE_FAILED" and nb.start <= e[7] < nb.end)
    sd = by_kind["silent_shutdown"]
    # the last success before the shutdown (a POST_SUCCESS / REPLY_SUCCESS event, a decision's
    # posted_at): the shutdown is one from 120 minutes after it
    successes = [e[7] for e in events if e[1] in ("POST_SUCCESS", "REPLY_SUCCESS")]
    successes += [d.posted_at for d in live.timeline.decisions if d.posted_at is not None]
    last = max((t for t in successes if t < sd.start), default=None)
    # no shutdown at all when the next success comes before the gap reaches 120 min (a placement
    # past the recovery)
    following = min((t for t in successes if last is not None and t > last), default=None)
    if last is None or (following is not None and from_us(following) <= from_us(last) + SHUTDOWN_GAP):
        out["shutdown"] = None
    else:
        out["shutdown"] = from_us(last) + SHUTDOWN_GAP
    return out


def _simulate(source: Location, seed: int, start: datetime, end: datetime, follow_start: datetime,
              seconds: float):
    """The timeline with the planned incidents; the shutdown moved until it becomes one (last
    success + 120 min) within SHUTDOWN_WITHIN of the run, ongoing for minutes before the
    recovery. Moving the planned start moves the last success by jumps (the bot's posts are
    minutes apart and the queue is held before a shutdown), so after a few corrections aimed at
    SHUTDOWN_AT the shifts are scanned in 30 s steps; an attempt is one simulation (~1 s)."""
    from orchestration.lib.simulator.follow import LiveTimeline

    target = follow_start + timedelta(seconds=SHUTDOWN_AT * seconds)
    earliest = follow_start + timedelta(seconds=SHUTDOWN_WITHIN[0] * seconds)
    latest = follow_start + timedelta(seconds=SHUTDOWN_WITHIN[1] * seconds)
    recovered = follow_start + timedelta(seconds=RECOVERED_AT * seconds)

    def attempt(shift: timedelta):
        incidents = plan(follow_start, seconds, seed, shift)
        live = LiveTimeline(source, seed=seed, start=start, end=end, incidents=incidents, steps=posts_before_shutdown)
        return live, first_rows(live, incidents)

    def miss(firsts) -> float:
        at = firsts["shutdown"]
        if at is None or at >= recovered - timedelta(minutes=1):
            return float("inf")  # no shutdown, or one the recovery ends at once
        # too early is worse than too late: it could inhibit the spike's alert
        return max(3 * (earliest - at).total_seconds(), (at - latest).total_seconds(), 0.0)

    shift, tried = timedelta(0), []
    for _attempt in range(4):
        live, firsts = attempt(shift)
        tried.append((miss(firsts), shift))
        if miss(firsts) == 0:
            return live, firsts
        if firsts["shutdown"] is None:
            break  # no shutdown to correct from: scan
        shift += target - firsts["shutdown"]
    for step in range(1, 100):  # +30 s, -30 s, +60 s, ... up to ±25 min
        shift = timedelta(seconds=30 * ((step + 1) // 2) * (1 if step % 2 else -1))
        live, firsts = attempt(shift)
        tried.append((miss(firsts), shift))
        if miss(firsts) == 0:
            return live, firsts
    best = min(tried, key=lambda t: t[0])[1]
    live, firsts = attempt(best)
    print(f"bench latency: seed {seed}: no shutdown placement within [{earliest:%H:%M:%S}, {latest:%H:%M:%S}]; "
          f"it becomes one at {firsts['shutdown']}")
    return live, firsts


def _bench_rules(workdir: Path) -> Path:
    """The shipped rules file with errors_per_hour paging (it is a digest rule there)."""
    from orchestration.lib.alerts.tick import DEFAULT_RULES_FILE

    data = yaml.safe_load(DEFAULT_RULES_FILE.read_text()) or {}
    overrides = data.setdefault("builtin_overrides", {})
    overrides.setdefault("errors_per_hour", {})["delivery"] = "page"
    path = workdir / "rules.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


def run_latency(minutes: float, interval: float, seed: int, admin_dsn: str, workdir: Path,
                history_hours: float = 30, phase: float = 0.0, grace_passes: int = 5) -> Run:
    """One run: ``phase`` seconds after following starts comes the first timed lane pass (incidents
    land at any moment between two passes in production: runs with different phases sample that);
    after the ``minutes``, passes go on until every incident is notified, at most ``grace_passes``
    more (a later notification is a miss)."""
    from orchestration.lib.alerts.channels import FileChannel
    from orchestration.lib.alerts.tick import RULES_FILE_ENV, SILENCES_FILE_ENV
    from orchestration.lib.fast_lane import run_fast_lane
    from orchestration.lib.source.schema import create_source_schema

    seconds = minutes * 60
    suffix = uuid.uuid4().hex[:8]
    src_db, wh_db = f"ops_bench_lat_src_{suffix}", f"ops_bench_lat_wh_{suffix}"
    admin = psycopg.connect(admin_dsn, autocommit=True)
    for db in (src_db, wh_db):
        admin.execute(f"create database {db}")
    saved_env = {k: os.environ.get(k) for k in (RULES_FILE_ENV, SILENCES_FILE_ENV)}
    os.environ[RULES_FILE_ENV] = str(_bench_rules(workdir))
    os.environ[SILENCES_FILE_ENV] = str(workdir / "no-silences.yml")
    run = Run(phase=round(phase, 1))
    try:
        source = Location.parse(_dsn_for(admin_dsn, src_db))
        warehouse = Location.parse(_dsn_for(admin_dsn, wh_db))
        channel = FileChannel(workdir / "alerts")
        create_source_schema(source, drop_existing=True)
        # the clock: the history ends where following starts; the first (full) lane pass runs on
        # the history before the clock starts, so the timed passes are the lane's steady state
        t0 = datetime.now(timezone.utc).replace(microsecond=0)
        # simulate + write the history + the first full build (OPS_BENCH_LATENCY_SETUP_SECONDS)
        setup_guess = timedelta(seconds=float(os.environ.get("OPS_BENCH_LATENCY_SETUP_SECONDS", "240")))
        follow_start = t0 + setup_guess
        live, firsts = _simulate(source, seed, t0 - timedelta(hours=history_hours),
                                 follow_start + timedelta(seconds=seconds + 4 * interval) + timedelta(hours=1),
                                 follow_start, seconds)
        ids = {"circuit_breaker": "lat-circuit_breaker", "shutdown": "lat-shutdown", "error_spike": "lat-error_spike",
               "null_tweet_id": "lat-null_tweet_id"}
        run.timed = [Timed(kind, ids[kind], firsts[kind]) for kind in KIND_RULES]
        run.history_rows = live.write_until(t0)
        began = time.perf_counter()
        run_fast_lane(source, warehouse, [channel], run_id="bench-full")
        run.first_pass_seconds = time.perf_counter() - began
        seen_lines = _lines(channel)
        # wait for the clock to reach follow_start (or start late: the plan is in absolute time)
        if datetime.now(timezone.utc) > follow_start:
            print(f"bench latency: the setup overran the {setup_guess} planned by "
                  f"{datetime.now(timezone.utc) - follow_start}; the first incident rows are written late "
                  "(their latency counts from when they were written)")
        while datetime.now(timezone.utc) < follow_start:
            now = datetime.now(timezone.utc)
            live.write_until(now)
            run.writes.append((_us(now), time.time()))
            time.sleep(1)

        stop = threading.Event()
        lock = threading.Lock()

        def writer() -> None:
            while not stop.is_set():
                now = datetime.now(timezone.utc)
                live.write_until(now)
                with lock:
                    run.writes.append((_us(now), time.time()))
                stop.wait(1.0)

        thread = threading.Thread(target=writer, name="follow", daemon=True)
        thread.start()
        end_wall = time.time() + seconds
        grace_end = end_wall + grace_passes * interval
        next_pass = time.time() + phase
        try:
            while True:
                wait = next_pass - time.time()
                if wait > 0:
                    time.sleep(wait)
                started = time.time()
                result = run_fast_lane(source, warehouse, [channel], run_id=f"bench{len(run.passes)}")
                done = time.time()
                run.passes.append(Pass(started, done - started, result.extract_seconds, result.build_seconds,
                                       result.tick_seconds, result.tick_summary))
                lines = _lines(channel)
                for line in lines[len(seen_lines):]:
                    _match(run, line, done)
                seen_lines = lines
                pending = any(t.first_at is not None and t.notified_at is None for t in run.timed)
                if done >= grace_end or (done >= end_wall and not pending):
                    break
                next_pass = max(started + interval, done)
        finally:
            stop.set()
            thread.join(timeout=30)
        with lock:
            for t in run.timed:
                if t.first_at is not None:
                    hi = _us(t.first_at)
                    t.written_at = next((wall for w_hi, wall in run.writes if w_hi > hi), None)
                    if t.written_at is None and t.first_at < follow_start:
                        t.written_at = follow_start.timestamp()
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for db in (src_db, wh_db):
            admin.execute(f"drop database if exists {db} with (force)")
        admin.close()
    return run


def _lines(channel) -> list[dict]:
    path = channel.jsonl_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _match(run: Run, note: dict, observed: float) -> None:
    if note.get("status") != "firing":
        return
    for t in run.timed:
        if t.notified_at is None and note.get("rule") in KIND_RULES[t.kind] and t.first_at is not None:
            at = datetime.fromisoformat(str(note["at"]).replace("Z", "+00:00"))
            if at >= t.first_at:
                t.notified_at, t.rule = observed, note["rule"]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def figures(runs: list[Run], minutes: float, interval: float, seed: int) -> dict[str, Any]:
    """Per incident kind over every run (seeds seed, seed + 1, …): p50, p95, max and misses."""
    kinds = {}
    passes = [p for run in runs for p in run.passes]
    for kind in KIND_RULES:
        timed = [t for run in runs for t in run.timed if t.kind == kind]
        lat = [t.latency for t in timed if t.latency is not None]
        kinds[kind] = {
            "incidents": len(timed), "notified": len(lat), "misses": len(timed) - len(lat),
            "p50_seconds": _pct(lat, 0.5), "p95_seconds": _pct(lat, 0.95), "max_seconds": max(lat) if lat else None,
            "latencies_seconds": [None if t.latency is None else round(t.latency, 1) for t in timed],
            "rules": sorted({t.rule for t in timed if t.rule}),
            "first_row_at": [t.first_at.isoformat() if t.first_at else None for t in timed],
        }
    secs = [p.seconds for p in passes]
    return {
        "minutes": minutes, "interval_seconds": interval, "seed": seed, "runs": len(runs),
        "phases_seconds": [run.phase for run in runs],
        "kinds": kinds,
        "passes": len(passes),
        "pass_seconds": {"p50": _pct(secs, 0.5), "max": max(secs) if secs else None,
                         "extract_p50": _pct([p.extract_seconds for p in passes], 0.5),
                         "build_p50": _pct([p.build_seconds for p in passes], 0.5),
                         "tick_p50": _pct([p.tick_seconds for p in passes], 0.5)},
        "first_full_pass_seconds": [round(run.first_pass_seconds, 1) for run in runs],
        "history_rows": [run.history_rows for run in runs],
    }


def print_table(f: dict[str, Any]) -> None:
    print(f"bench latency: {f['runs']} run(s) of {f['minutes']:g} min following, fast lane every "
          f"{f['interval_seconds']:g} s (first pass after {', '.join(f'{p:g}' for p in f['phases_seconds'])} s), "
          f"seeds from {f['seed']}; {f['passes']} lane passes (p50 {_fmt(f['pass_seconds']['p50'])} s: extract "
          f"{_fmt(f['pass_seconds']['extract_p50'])}, dbt {_fmt(f['pass_seconds']['build_p50'])}, tick "
          f"{_fmt(f['pass_seconds']['tick_p50'])}; max {_fmt(f['pass_seconds']['max'])} s)")
    print(f"{'incident kind':<18}{'incidents':>10}{'notified':>10}{'misses':>8}{'p50 s':>9}{'p95 s':>9}{'max s':>9}  rule")
    for kind, k in f["kinds"].items():
        print(f"{kind:<18}{k['incidents']:>10}{k['notified']:>10}{k['misses']:>8}{_fmt(k['p50_seconds']):>9}"
              f"{_fmt(k['p95_seconds']):>9}{_fmt(k['max_seconds']):>9}  {', '.join(k['rules']) or '-'}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def phases(runs: int, interval: float) -> list[float]:
    """Where the pass grid sits against the incidents, run by run: spread evenly over one interval
    (an incident lands at any moment between two passes)."""
    return [interval * i / runs for i in range(runs)]


def main(minutes: float, interval: float, seed: int, json_path: str | None, admin_dsn: str | None,
         history_hours: float = 30, runs: int = 1) -> int:
    admin_dsn = admin_dsn or os.environ.get("OPS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    done: list[Run] = []
    for i, phase in enumerate(phases(runs, interval)):
        with tempfile.TemporaryDirectory(prefix="ops_bench_latency_") as tmp:
            done.append(run_latency(minutes, interval, seed + i, admin_dsn, Path(tmp), history_hours, phase))
        if runs > 1:
            print(f"bench latency: run {i + 1}/{runs} (seed {seed + i}, first pass after {phase:g} s): "
                  + ", ".join(f"{t.kind} {_fmt(t.latency)} s" for t in done[-1].timed))
    f = figures(done, minutes, interval, seed)
    print_table(f)
    write_figures(json_path, f)
    return 0


__all__ = ["KIND_RULES", "figures", "first_rows", "main", "phases", "plan", "run_latency"]
