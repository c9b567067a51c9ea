"""``ops-warehouse alerts …``: check the rules file, run a tick by hand, see what is firing, and
create or list silences."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from orchestration.lib import settings
from orchestration.lib.db import read_query


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("alerts", help="alert rules, ticks, firing alerts and silences")
    sub = p.add_subparsers(dest="alerts_command", required=True)

    check = sub.add_parser("check", help="validate the rules (and silences) file and list the rules")
    check.add_argument("--rules", type=Path, help="rules file (default $OPS_ALERT_RULES_FILE or alerts/rules.yml)")
    check.add_argument("--silences", type=Path, help="silences file (default alerts/silences.yml if present)")
    check.add_argument("--offline", action="store_true",
                       help="validate the files only; do not plan (EXPLAIN) the custom rules against the warehouse")
    check.set_defaults(func=run_check)

    tick = sub.add_parser("run", help="evaluate the rules now (or at --now), record transitions, deliver")
    tick.add_argument("--now", help="ISO timestamp to evaluate at (default: the current time, to the second)")
    tick.add_argument("--only", help="comma-separated rule names")
    tick.add_argument("--no-deliver", action="store_true", help="queue notifications without sending them")
    tick.set_defaults(func=run_tick_command)

    status = sub.add_parser("status", help="firing alerts, the outbox backlog and the dead letters per channel")
    status.add_argument("--limit", type=int, default=50, help="dead letters listed (default 50; 0: counts only)")
    status.set_defaults(func=run_status)

    replay = sub.add_parser("replay", help="put dead-lettered notifications back in the queue (attempts reset)")
    replay.add_argument("--channel", help="only this channel's dead letters")
    replay.add_argument("--id", dest="ids", type=int, nargs="+", metavar="N", help="only these outbox ids")
    replay.add_argument("--no-deliver", action="store_true", help="queue them without sending now")
    replay.set_defaults(func=run_replay)

    silence = sub.add_parser("silence", help="silence matching alerts for a while (stored in alerts.silences)")
    silence.add_argument("--rule", help="rule name or glob (e.g. stale_*)")
    silence.add_argument("--subject", help="subject or glob (e.g. a job name)")
    silence.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="label matcher")
    when = silence.add_mutually_exclusive_group(required=True)
    when.add_argument("--for", dest="duration", help="how long, e.g. 30m, 2h, 1d")
    when.add_argument("--until", help="ISO timestamp the silence ends")
    silence.add_argument("--start", help="ISO timestamp the silence starts (default now)")
    silence.add_argument("--comment", help="why")
    silence.add_argument("--by", default=os.environ.get("USER"), help="who (default $USER)")
    silence.set_defaults(func=run_silence)

    silences = sub.add_parser("silences", help="list the silences active now")
    silences.set_defaults(func=run_list_silences)


def _when(text: str | None, default: datetime | None = None) -> datetime:
    if text is None:
        return default or datetime.now(timezone.utc).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a timestamp: {text!r} (use ISO 8601, e.g. 2026-09-01T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def run_check(args: argparse.Namespace) -> int:
    """Validate the rules (and silences) file, then plan every custom rule's query against the
    warehouse read-only (EXPLAIN, with :window_start / :now rendered): a misspelled relation or
    function, several statements or a write is reported as ``path:line: rule 'x': …``; exit 1."""
    import sys

    from orchestration.lib.alerts import tick
    from orchestration.lib.alerts.ledger import explain_custom_rules, load_silences
    from orchestration.lib.alerts.rules import load_grouping, load_rules

    path = args.rules or tick.rules_file()
    rules = load_rules(path if path.exists() else None, channels=tick.CHANNEL_NAMES)
    print(f"{path}: {len(rules)} rules" + ("" if path.exists() else " (file absent: the built-in rules)"))
    for r in rules:
        route = f" -> {','.join(r.routing)}" if r.routing else ""
        print(f"  {r.name:28s} {r.kind:8s} {r.severity:8s} value {r.condition.op} {r.condition.threshold:g} "
              f"over {r.window}{route}")
    grouping = load_grouping(path if path.exists() else None)
    print(f"  incident groups of paging rules: by [{', '.join(grouping.by)}], window {grouping.window}"
          if grouping.enabled else "  incident groups: disabled (one group per rule and evaluation)")
    spath = args.silences or tick.silences_file()
    if spath.exists():
        print(f"{spath}: {len(load_silences(spath))} silences")
    custom = [r for r in rules if r.kind in ("sql", "metric")]
    if getattr(args, "offline", False) or not custom:
        return 0
    warehouse = settings.warehouse_location()
    errors = explain_custom_rules(warehouse, custom, datetime.now(timezone.utc).replace(microsecond=0))
    lines = {r.name: r.line for r in custom}
    for name, error in errors.items():
        print(f"{path}:{lines.get(name) or 1}: {error}", file=sys.stderr)
    print(f"{warehouse.redacted()}: {len(custom) - len(errors)} of {len(custom)} custom rules plan"
          + (f"; {len(errors)} do not" if errors else ""))
    return 1 if errors else 0


def run_tick_command(args: argparse.Namespace) -> int:
    """One tick by hand. Exit 1 when a rule could not be evaluated (the other rules still are,
    and their alerts are recorded and delivered); each failed rule is named with its reason."""
    import sys

    from orchestration.lib.alerts.channels import channels_from_env
    from orchestration.lib.alerts.ledger import require_warehouse
    from orchestration.lib.alerts.tick import configured_rules, rules_file, run_tick

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    warehouse = settings.warehouse_location()
    require_warehouse(warehouse)  # a tick must not create an empty DuckDB file and alert on it
    rules = configured_rules()
    if only is not None:
        unknown = sorted(set(only) - {r.name for r in rules})
        if unknown:
            raise ValueError(f"--only: unknown rule(s) {', '.join(unknown)}")
    result = run_tick(warehouse, _when(args.now), channels_from_env(echo=True), rules=rules, only=only,
                      deliver=not args.no_deliver)
    print(f"alerts at {result.now.isoformat()}: {result.summary_line()}")
    lines = {r.name: r.line for r in rules}
    for rule, error in sorted(result.rule_errors.items()):
        where = f"{rules_file()}:{lines[rule]}: " if lines.get(rule) else ""
        print(f"  {where}rule {rule} not evaluated: {error}", file=sys.stderr)
    return 1 if result.rule_errors else 0


def run_status(args: argparse.Namespace) -> int:
    from orchestration.lib.alerts import ledger, outbox

    warehouse = settings.warehouse_location()
    ledger.ensure_schema(warehouse)
    outbox.ensure_outbox(warehouse)
    _, rows = read_query(warehouse, f"""select rule, subject, severity, first_fired_at, value, suppressed_by
                                        from {ledger.LEDGER} where status = 'firing'
                                        order by severity, first_fired_at, rule, subject""")
    print(f"firing alerts: {len(rows)}")
    for rule, subject, severity, since, value, suppressed in rows:
        note = f"  ({suppressed})" if suppressed else ""
        print(f"  {severity:8s} {rule:28s} {subject[:40]:40s} since {since:%Y-%m-%d %H:%M} value {value}{note}")
    _, rows = read_query(warehouse, f"""select channel, count(*), max(attempts), max(last_error)
                                        from {outbox.TABLE} where {outbox.PENDING} group by channel order by 1""")
    print("outbox: " + ("nothing pending" if not rows else ""))
    for channel, n, attempts, error in rows:
        print(f"  {channel}: {n} pending, {attempts} attempt(s); last error: {error or '-'}")
    dead = outbox.dead_letters(warehouse)
    per_channel: dict[str, int] = {}
    for d in dead:
        per_channel[d["channel"]] = per_channel.get(d["channel"], 0) + 1
    print(f"dead letters: {len(dead)}" + (" (" + ", ".join(f"{c}: {n}" for c, n in sorted(per_channel.items()))
                                          + "; `ops-warehouse alerts replay` retries them)" if dead else ""))
    limit = max(0, args.limit if getattr(args, "limit", None) is not None else 50)
    for d in dead[:limit]:  # the errors were redacted of secrets when stored
        print(f"  #{d['id']} {d['channel']:8s} {d['transition_id'][:40]:40s} after {d['attempts']} attempt(s) "
              f"at {d['dead_lettered_at']:%Y-%m-%d %H:%M}: {d['last_error'] or '-'}")
    if len(dead) > limit:
        print(f"  ... {len(dead) - limit} more (--limit)")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from orchestration.lib.alerts import outbox
    from orchestration.lib.alerts.channels import channels_from_env

    warehouse = settings.warehouse_location()
    moved = outbox.replay(warehouse, channel=args.channel, ids=args.ids)
    print(f"replayed {len(moved)} dead letter(s)" + (f": ids {', '.join(map(str, moved))}" if moved else ""))
    if moved and not args.no_deliver:
        summary = outbox.deliver(warehouse, channels_from_env(), datetime.now(timezone.utc))
        for name, c in sorted(summary.channels.items()):
            print(f"  {name}: sent {c.sent}, failed {c.failed}, dead-lettered {c.dead_lettered}, pending {c.pending}"
                  + (f"; last error: {c.last_error}" if c.last_error else ""))
    return 0


def run_silence(args: argparse.Namespace) -> int:
    from orchestration.lib.alerts.ledger import add_silence
    from orchestration.lib.alerts.rules import parse_duration

    matcher = {k: v for k, v in (("rule", args.rule), ("subject", args.subject)) if v}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {item!r}: expected KEY=VALUE")
        matcher[key] = value
    if not matcher:
        raise ValueError("give at least one of --rule, --subject, --label: an empty matcher would silence everything")
    starts = _when(args.start)
    ends = starts + parse_duration(args.duration) if args.duration else _when(args.until)
    s = add_silence(settings.warehouse_location(), matcher, starts, ends, args.by, args.comment)
    print(f"silence {s.silence_id}: {json.dumps(s.matcher, sort_keys=True)} from {s.starts_at.isoformat()} "
          f"until {s.ends_at.isoformat()}")
    return 0


def run_list_silences(args: argparse.Namespace) -> int:
    from orchestration.lib.alerts import ledger

    warehouse = settings.warehouse_location()
    ledger.ensure_schema(warehouse)
    now = datetime.now(timezone.utc)
    _, rows = read_query(warehouse, f"select silence_id, matcher, starts_at, ends_at, created_by, comment "
                                    f"from {ledger.SILENCES} order by ends_at")
    active = [r for r in rows if r[2] <= now < r[3]]
    print(f"active silences: {len(active)}")
    for sid, matcher, starts, ends, by, comment in active:
        print(f"  {sid} {matcher} until {ends:%Y-%m-%d %H:%M} by {by or '-'}: {comment or ''}")
    return 0
