"""``ops-warehouse simulate``: write a simulated history into the source, or follow in real time."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestration.lib import settings
from orchestration.lib.settings import Location


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate the bot's operations into the source tables (PostgreSQL or DuckDB)",
        description="Simulate the posting bot's operational tables, with injected incidents "
                    "recorded as ground truth outside the source tables.",
    )
    p.add_argument("--days", type=float, default=30.0, help="length of the simulated period (default 30)")
    p.add_argument("--seed", type=int, default=42, help="random seed; same seed, same rows (default 42)")
    p.add_argument("--target", help="postgresql:// DSN or DuckDB file path "
                                    "(default: OPS_SOURCE_URL or data/source.duckdb)")
    p.add_argument("--end", help="end of the period, ISO 8601 (default: now, truncated to the hour, UTC)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplies the volume of high-frequency events (default 1: ~13k events/day)")
    p.add_argument("--no-incidents", action="store_true", help="do not inject incidents")
    p.add_argument("--incidents-from", help="inject incidents only from this instant, ISO 8601")
    p.add_argument("--incidents-to", help="inject incidents only before this instant, ISO 8601")
    p.add_argument("--incidents-per-day", type=float, default=0.8,
                   help="incident density (default 0.8; 8 kinds, so 8/7 in one week = one of each)")
    p.add_argument("--no-bot-habits", action="store_true",
                   help="leave out the bot's habits that break naive extraction (status changes without "
                        "updated_at, deleted decisions, back-dated events, poison payloads, bad times)")
    p.add_argument("--payload-type", choices=("jsonb", "json"), default="jsonb",
                   help="PostgreSQL: type of system_events' payload columns when the tables are created "
                        "(default jsonb as the bot's migrations leave it; json also keeps poison payloads)")
    p.add_argument("--truth", type=Path, help="where to write the incidents' ground truth (JSON)")
    p.add_argument("--append", action="store_true", help="append to the tables instead of recreating them")
    p.add_argument("--follow", action="store_true",
                   help="instead of a history, keep appending events in real time (Ctrl-C to stop)")
    p.add_argument("--rate", type=float, help="events per second in --follow mode")
    p.add_argument("--duration", type=float, help="stop --follow after this many seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestration.lib.simulator.follow import follow
    from orchestration.lib.simulator.simulate import end_from_iso, simulate

    target = Location.parse(args.target) if args.target else settings.source_location()
    if args.follow:
        if not args.rate:
            raise ValueError("--follow needs --rate (events per second)")
        print(f"following into {target.redacted()} at {args.rate:g} events/s (Ctrl-C to stop)", flush=True)
        result = follow(target, rate_per_second=args.rate, seed=args.seed, duration_seconds=args.duration)
        print(f"appended {result.events} events in {result.seconds:.1f}s ({result.batches} batches)")
        return 0
    summary = simulate(
        target, days=args.days, seed=args.seed, end=end_from_iso(args.end) if args.end else None,
        truth_path=args.truth, reset=not args.append, scale=args.scale, incidents=not args.no_incidents,
        incidents_from=end_from_iso(args.incidents_from) if args.incidents_from else None,
        incidents_to=end_from_iso(args.incidents_to) if args.incidents_to else None,
        incidents_per_day=args.incidents_per_day, bot_habits=not args.no_bot_habits,
        payload_type=args.payload_type,
    )
    days = f"{args.days:g} day{'' if args.days == 1 else 's'}"
    print(f"simulated {days} [{summary.start.isoformat()} .. {summary.end.isoformat()}) "
          f"seed {summary.seed} into {target.redacted()} in {summary.seconds:.1f}s")
    for table, count in summary.rows.items():
        print(f"  {table:<45} {count:>10,} rows")
    if summary.deleted_events:
        print(f"  {'(verification_failed rows deleted by the guard)':<45} {summary.deleted_events:>10,}")
    if summary.deleted_decisions:
        print(f"  {'(decisions deleted by maintenance scripts)':<45} {summary.deleted_decisions:>10,}")
    per_kind = summary.incidents_per_kind()
    print(f"incidents: {len(summary.incidents)}"
          + (" (" + ", ".join(f"{kind} {n}" for kind, n in per_kind.items()) + ")" if per_kind else ""))
    habits = summary.habit_counts()
    if habits:
        print("bot habits: " + ", ".join(f"{kind} {n}" for kind, n in habits.items()))
    print(f"ground truth: {summary.truth_path}"
          + (" and sim_truth.incidents" if target.is_postgres else ""))
    return 0
