"""Alert noise: how many of the notifications the alert rules send match an injected incident?

The simulator writes ``days`` of the bot's life (seed ``seed``) into a temporary DuckDB source,
with the injected incidents as ground truth. The source is extracted and built into a DuckDB
warehouse (``build_marts`` as of the end of the data); the detector's warning/critical anomalies
are scored once over the period and land in ``marts.mart_anomalies`` hour by hour (an hour's
anomalies once it is complete, as the hourly refresh leaves them). Then the alert sensor is
replayed hourly (``observe`` on the warehouse, ``evaluate`` into a separate ledger) over the whole
period, once per rule set: the built-in defaults and the shipped configuration
(``alerts/rules.yml``: overrides and custom rules).

A FIRING notification (an alert's first notice or a repeat) MATCHES an incident when

- its rule targets the incident's kind (:data:`RULE_TARGETS`),
- its subject is one the incident shows under for that rule, or the rule is global (one subject
  for the whole bot: ``system``, ``all``, ``posting``), and
- it was sent within [incident start - ``slack``, incident end + ``grace``] (default 1 h and
  2 h: an hourly rule sees an incident's last hour at the tick after it ends).

The data-quality incident kinds (late_commit, deleted_verification_failed: rows committed late or
deleted) are left out, as in the detection benchmark: no alert rule targets them. Rules that
target no incident kind (new_error_template, stale_source; custom rules not in the map) count
every notification as matching no incident.

Per rule and in total (``all``: every rule; ``paging``: the rules with ``delivery: page``, the
digest rules' notifications going out in one daily message): incidents notified / incidents
(recall), median delay from incident start to its first matching notification (minutes, 0 when
one was already being sent at the start), notifications per notified incident, notifications
matching no incident, alert episodes (first notices) and those matching no incident, and the
share of notifications that match an incident. The first ``WARMUP`` (24 h) of the period is
left out: incidents starting and notifications sent in it.

Notification groups (the ledger's incident groups of paging rules, ``grouping:`` in the rules
file; a digest rule's group is its rule and tick): a group MATCHES an incident when one of its
FIRING notifications does. Per set: groups, groups per notified incident (the groups matching it,
averaged over the notified incidents) and the share of groups that match an incident.
"""

from __future__ import annotations

import statistics
from collections import Counter
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from orchestration.lib.bench import write_figures
from orchestration.lib.bench.detection_bench import EXCLUDED_KINDS, incident_series
from orchestration.lib.settings import Location

END = datetime(2026, 3, 1, tzinfo=timezone.utc)  # pinned: same seed, same rows
H = timedelta(hours=1)
SLACK = timedelta(hours=1)
GRACE = timedelta(hours=2)
# the first day of a simulated period is left out of the figures: the anomaly scorer waits for
# 24 h of history and every error template is new then, which a running deployment is past
WARMUP = timedelta(hours=24)

SubjectsOf = Callable[[dict[str, Any]], set[str]]


def _job(incident: dict[str, Any]) -> set[str]:
    return {str((incident.get("details") or {}).get("job_name", incident["subject"]))}


def _family(incident: dict[str, Any]) -> set[str]:
    """An error spike's family (error_rate_increase on the dimension family) or the total."""
    details = incident.get("details") or {}
    event_type = str(details.get("event_type") or details.get("cause") or incident.get("subject") or "")
    return {event_type.removeprefix("error_"), "total", "all"}


def _series(incident: dict[str, Any]) -> set[str]:
    """The detector's series the incident moves (the detection benchmark's map); errors also show
    in their error category's series (``error_category:*``, which the warehouse adds)."""
    found = set(incident_series(incident))
    return found | {"error_category:*"} if incident["kind"] in ERROR_KINDS else found


ERROR_KINDS = ("error_spike", "cause_effect")
SHUTDOWN_KINDS = ("silent_shutdown", "circuit_breaker_stuck")
BEHAVIOUR_KINDS = ("error_spike", "cause_effect", "null_tweet_id_burst", "job_failure_streak",
                   *SHUTDOWN_KINDS)

# rule -> (incident kinds it targets, the subjects an incident shows under; None = a global rule)
RULE_TARGETS: dict[str, tuple[tuple[str, ...], SubjectsOf | None]] = {
    "system_shutdown": (SHUTDOWN_KINDS, None),
    # the checklist's "critical errors" are system shutdowns; the breaker incident logs
    # circuit_breaker_stuck (critical) and a critical_error_alert an hour in
    "critical_errors": (SHUTDOWN_KINDS, None),
    # every severity-critical event: also a job's consecutive failures
    "critical_events": ((*SHUTDOWN_KINDS, "job_failure_streak"), None),
    "circuit_breaker": (("circuit_breaker_stuck",), None),
    "consecutive_job_failures": (("job_failure_streak",), _job),
    "stale_job": (("job_failure_streak",), _job),
    "null_tweet_ids": (("null_tweet_id_burst",), None),
    "errors_per_hour": (ERROR_KINDS, None),
    "error_rate_increase": (ERROR_KINDS, _family),
    "anomaly": (BEHAVIOUR_KINDS, _series),
    "new_error_template": ((), None),
    "stale_source": ((), None),
    # the shipped custom rules (alerts/rules.yml)
    "job_errors_per_2h": (("job_failure_streak",), _job),
    "posting_blocked": (SHUTDOWN_KINDS, None),
}


@dataclass(frozen=True)
class Sent:
    """A FIRING notification as the bench sees it."""

    rule: str
    subject: str
    at: datetime
    since: datetime  # the alert episode's first notice
    paging: bool = True
    group: str | None = None  # the notification's group_key (None: a group of its own)

    @property
    def episode(self) -> tuple[str, str, datetime]:
        return (self.rule, self.subject, self.since)


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return _ts(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def matches(note: Sent, incident: dict[str, Any], slack: timedelta = SLACK, grace: timedelta = GRACE,
            targets: dict[str, tuple[tuple[str, ...], SubjectsOf | None]] = RULE_TARGETS) -> bool:
    """Does ``note`` report ``incident``? (see the module docstring)"""
    kinds, subjects_of = targets.get(note.rule, ((), None))
    if incident["kind"] not in kinds:
        return False
    if subjects_of is not None and not _subject_in(note.subject, subjects_of(incident)):
        return False
    return _ts(incident["start"]) - slack <= note.at <= _ts(incident["end"]) + grace


def _subject_in(subject: str, subjects: set[str]) -> bool:
    """``subjects`` may hold prefixes ending in ``*``."""
    return subject in subjects or any(s.endswith("*") and subject.startswith(s[:-1]) for s in subjects)


def _median_minutes(delays: list[timedelta]) -> float | None:
    return round(statistics.median(d.total_seconds() / 60 for d in delays), 1) if delays else None


def _figures(notes: list[Sent], incidents: list[dict[str, Any]], match: Callable[[Sent, dict], bool],
             groups_left_out: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The figures of one set of notifications against the incidents they could report
    (``groups_left_out``: groups not counted as groups, those opened in the warm-up)."""
    first: dict[str, datetime] = {}
    matched_notes = 0
    episodes: dict[tuple, bool] = {}
    unmatched: Counter[str] = Counter()
    for n in notes:
        hit = [i for i in incidents if match(n, i)]
        matched_notes += bool(hit)
        if not hit:
            unmatched[f"{n.rule}:{n.subject}"] += 1
        episodes[n.episode] = episodes.get(n.episode, False) or bool(hit)
        for i in hit:
            iid = i["incident_id"]
            first[iid] = min(first.get(iid, n.at), n.at)
    delays = [max(first[i["incident_id"]] - _ts(i["start"]), timedelta(0))
              for i in incidents if i["incident_id"] in first]
    # a group matches the incidents any of its notifications matches
    group_hits: dict[Any, set[str]] = {}
    for k, n in enumerate(notes):
        if n.group in groups_left_out:
            continue
        hits = group_hits.setdefault(n.group if n.group is not None else ("alone", k), set())
        hits.update(i["incident_id"] for i in incidents if match(n, i))
    groups_of_incident = Counter(iid for hits in group_hits.values() for iid in hits)
    matched_groups = sum(bool(hits) for hits in group_hits.values())
    return {
        "incidents": len(incidents),
        "notified": len(first),
        "recall": round(len(first) / len(incidents), 3) if incidents else None,
        "median_delay_min": _median_minutes(delays),
        "max_delay_min": round(max(d.total_seconds() for d in delays) / 60, 1) if delays else None,
        "notifications": len(notes),
        "matched": matched_notes,
        "no_incident": len(notes) - matched_notes,
        "per_incident": round(matched_notes / len(first), 2) if first else None,
        "match_share": round(matched_notes / len(notes), 3) if notes else None,
        "episodes": len(episodes),
        "episodes_no_incident": sum(not m for m in episodes.values()),
        "groups": len(group_hits),
        "groups_matched": matched_groups,
        "groups_no_incident": len(group_hits) - matched_groups,
        "groups_per_incident": round(sum(groups_of_incident.values()) / len(first), 2) if first else None,
        "max_groups_per_incident": max(groups_of_incident.values(), default=None),
        "group_match_share": round(matched_groups / len(group_hits), 3) if group_hits else None,
        "missed": sorted(i["incident_id"] for i in incidents if i["incident_id"] not in first),
        "no_incident_top": dict(unmatched.most_common(8)),
    }


def alert_figures(notes: Iterable[Sent], incidents: list[dict[str, Any]], rules: Iterable[str],
                  slack: timedelta = SLACK, grace: timedelta = GRACE,
                  paging: dict[str, bool] | None = None, warmup_end: datetime | None = None) -> dict[str, Any]:
    """Per rule (against the incidents of the kinds it targets) and in total (every rule, and the
    paging ones only, against every behaviour incident). Incidents that start and notifications
    sent before ``warmup_end`` are left out, and so are the groups opened then (their first
    message went out in the warm-up: their incident is left out, so their updates would count as
    groups matching no incident)."""
    opened_in_warmup = frozenset(n.group for n in notes if n.group is not None and warmup_end is not None
                                 and n.at < warmup_end)
    notes = sorted((n for n in notes if warmup_end is None or n.at >= warmup_end),
                   key=lambda n: (n.at, n.rule, n.subject))
    incidents = [i for i in incidents if i["kind"] not in EXCLUDED_KINDS
                 and (warmup_end is None or _ts(i["start"]) >= warmup_end)]

    def match(n: Sent, i: dict) -> bool:
        return matches(n, i, slack, grace)

    per_rule = {}
    for rule in rules:
        kinds = RULE_TARGETS.get(rule, ((), None))[0]
        mine = [n for n in notes if n.rule == rule]
        pages = paging.get(rule) if paging is not None else (any(n.paging for n in mine) if mine else None)
        per_rule[rule] = {"targets": list(kinds), "paging": pages,
                          **_figures(mine, [i for i in incidents if i["kind"] in kinds], match, opened_in_warmup)}
    return {"rules": per_rule,
            "all": _figures(notes, incidents, match, opened_in_warmup),
            "paging": _figures([n for n in notes if n.paging], incidents, match, opened_in_warmup)}


# ---------------------------------------------------------------------------------------------
# the replay


def build_warehouse(workdir: Path, days: float, seed: int, end: datetime = END,
                    log: Callable[[str], None] = lambda _: None) -> tuple[Location, dict[str, Any]]:
    """A simulated DuckDB source, extracted and built into a DuckDB warehouse; (warehouse, truth)."""
    from orchestration.lib.build import build_marts
    from orchestration.lib.extract.engine import extract_all
    from orchestration.lib.simulator import simulate

    source = Location.parse(str(workdir / "source.duckdb"))
    warehouse = Location.parse(str(workdir / "warehouse.duckdb"))
    summary = simulate(source, days=days, seed=seed, end=end, truth_path=workdir / "truth.json")
    log(f"simulated: {summary}")
    extract_all(source, warehouse)
    build_marts(warehouse, end)
    return warehouse, {"start": summary.start, "end": summary.end, "incidents": summary.incidents}


def scored_anomalies(warehouse: Location, start: datetime, end: datetime) -> list[tuple]:
    """The detector's warning/critical anomalies of the period: (series, bucket, observed,
    expected, severity, rules)."""
    import pandas as pd

    from orchestration.lib.anomaly.warehouse import read_series_rows, score_rows
    from orchestration.lib.db import connect

    with connect(warehouse) as conn:
        rows, _window = read_series_rows(conn, start, end, "?")
    _n, found = score_rows(rows, start, end)
    return sorted((a.series, _ts(pd.Timestamp(a.bucket).to_pydatetime()), float(a.observed),
                   None if a.expected is None else float(a.expected), a.severity, ",".join(a.rules))
                  for _kind, a in found if a.severity in ("warning", "critical"))


def is_paging(rule: Any) -> bool:
    """A rule that pages (rules.yml ``delivery``); a digest rule's notifications go out once a day."""
    return getattr(rule, "delivery", "page") == "page"


def replay(warehouse: Location, ledgers: dict[str, Location], rule_sets: dict[str, list], start: datetime,
           end: datetime, anomalies: list[tuple], is_paging: Callable[[Any], bool] = is_paging,
           groupings: dict[str, Any] | None = None) -> dict[str, list[Sent]]:
    """The sensor's hourly ticks from ``start`` to ``end``, each rule set into its own ledger
    (with its incident grouping, default the built-in one); the FIRING notifications of each."""
    from orchestration.lib.alerts.ledger import evaluate, observe
    from orchestration.lib.alerts.notification import FIRING
    from orchestration.lib.alerts.rules import DEFAULT_GROUPING
    from orchestration.lib.db import connect

    with connect(warehouse) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("drop table if exists marts.mart_anomalies")
        conn.execute("create table marts.mart_anomalies (series text, bucket timestamptz, observed double, "
                     "expected double, severity text, rules text)")
    pending = sorted(anomalies, key=lambda a: a[1])
    sent: dict[str, list[Sent]] = {name: [] for name in rule_sets}
    paging = {name: {r.name: is_paging(r) for r in rules} for name, rules in rule_sets.items()}
    now = start
    while now <= end:
        due = [a for a in pending if a[1] + H <= now]
        if due:
            pending = pending[len(due):]
            with connect(warehouse) as conn:
                conn.executemany("insert into marts.mart_anomalies values (?, ?, ?, ?, ?, ?)", due)
        for name, rules in rule_sets.items():
            obs = observe(warehouse, rules, now)
            grouping = (groupings or {}).get(name, DEFAULT_GROUPING)
            for n in evaluate(ledgers[name], obs.conditions, now, obs.evaluated, grouping=grouping):
                if n.status == FIRING:
                    sent[name].append(Sent(n.rule, n.subject, _ts(n.at), _ts(n.since), paging[name][n.rule],
                                           n.group_key))
        now += H
    return sent


def rule_sets(rules_file: Path | None = None) -> dict[str, list]:
    """The built-in defaults and the shipped configuration (alerts/rules.yml)."""
    from orchestration.lib.alerts.rules import BUILTIN_RULES, load_rules
    from orchestration.lib.alerts.tick import CHANNEL_NAMES, DEFAULT_RULES_FILE

    path = rules_file or DEFAULT_RULES_FILE
    return {"builtin": list(BUILTIN_RULES.values()),
            "shipped": load_rules(path if path.exists() else None, channels=CHANNEL_NAMES)}


def rule_set_groupings(rules_file: Path | None = None) -> dict[str, Any]:
    """The incident grouping of each rule set: the default, and alerts/rules.yml's ``grouping:``."""
    from orchestration.lib.alerts.rules import DEFAULT_GROUPING, load_grouping
    from orchestration.lib.alerts.tick import DEFAULT_RULES_FILE

    path = rules_file or DEFAULT_RULES_FILE
    return {"builtin": DEFAULT_GROUPING, "shipped": load_grouping(path if path.exists() else None)}


def run_alerts_bench(days: float, seed: int, workdir: Path, end: datetime = END,
                     sets: dict[str, list] | None = None, warmup: timedelta = WARMUP,
                     log: Callable[[str], None] = lambda _: None,
                     groupings: dict[str, Any] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    warehouse, truth = build_warehouse(workdir, days, seed, end, log)
    built = time.perf_counter()
    start = truth["start"].astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) + H
    anomalies = scored_anomalies(warehouse, start - H, truth["end"])
    sets = sets if sets is not None else rule_sets()
    groupings = groupings if groupings is not None else rule_set_groupings()
    ledgers = {name: Location.parse(str(workdir / f"ledger_{name}.duckdb")) for name in sets}
    sent = replay(warehouse, ledgers, sets, start, truth["end"].astimezone(timezone.utc), anomalies,
                  groupings=groupings)
    replayed = time.perf_counter()
    incidents = truth["incidents"]
    kinds: dict[str, int] = {}
    for i in incidents:
        if i["kind"] not in EXCLUDED_KINDS:
            kinds[i["kind"]] = kinds.get(i["kind"], 0) + 1
    figures = {
        "days": days, "seed": seed, "start": start.isoformat(), "end": truth["end"].isoformat(),
        "slack_min": SLACK.total_seconds() / 60, "grace_min": GRACE.total_seconds() / 60,
        "incidents_by_kind": kinds, "excluded_kinds": list(EXCLUDED_KINDS),
        "seconds": {"build": round(built - started, 1), "replay": round(replayed - built, 1)},
        # the raw material, to recompute the figures with another matching (--from-json)
        "incidents": [i for i in incidents if i["kind"] not in EXCLUDED_KINDS],
        "sent": {name: [[n.rule, n.subject, n.at.isoformat(), n.since.isoformat(), n.paging, n.group]
                         for n in notes] for name, notes in sent.items()},
        "grouping": {name: {"by": list(g.by), "window_min": g.window.total_seconds() / 60, "enabled": g.enabled}
                     for name, g in groupings.items()},
        "delivery": {name: {r.name: is_paging(r) for r in rules} for name, rules in sets.items()},
    }
    return refigure(figures, truth["start"].astimezone(timezone.utc) + warmup)


def refigure(figures: dict[str, Any], warmup_end: datetime) -> dict[str, Any]:
    """The figures of a run from its raw notifications and incidents (a saved --json too)."""
    incidents = figures["incidents"]
    sets = {}
    for name, rows in figures["sent"].items():
        # rows of runs before notification groups have 5 fields: each notification its own group
        notes = [Sent(r[0], r[1], _ts(r[2]), _ts(r[3]), bool(r[4]), r[5] if len(r) > 5 else None) for r in rows]
        paging = figures.get("delivery", {}).get(name)
        rules = list(paging) if paging else list(dict.fromkeys(n.rule for n in notes))
        sets[name] = alert_figures(notes, incidents, rules, paging=paging, warmup_end=warmup_end)
    counted = [i["incident_id"] for i in incidents if _ts(i["start"]) >= warmup_end]
    return {**figures, "warmup_end": warmup_end.isoformat(),
            "incidents_in_warmup": sorted(i["incident_id"] for i in incidents if i["incident_id"] not in counted),
            "sets": sets}


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if pct else f"{v:g}"


def print_table(figures: dict[str, Any]) -> None:
    names = list(figures["sets"])
    print(f"alerts, {figures['days']:g} days, seed {figures['seed']}, incidents {figures['incidents_by_kind']}; "
          f"from {figures.get('warmup_end', figures['start'])} (left out before: "
          f"{', '.join(figures.get('incidents_in_warmup', [])) or 'no incident'}); "
          f"build {figures['seconds']['build']}s, replay {figures['seconds']['replay']}s")
    print("| rule | " + " | ".join(f"{n}: notified/incidents | {n}: median delay min | {n}: notif./incident | "
                                    f"{n}: notifications | {n}: no incident | {n}: episodes (no incident)"
                                    for n in names) + " |")
    print("|---|" + "---:|" * (6 * len(names)))
    rules = list(dict.fromkeys(r for n in names for r in figures["sets"][n]["rules"]))
    def how(r: str) -> str:
        pages = {figures["sets"][n]["rules"][r]["paging"] for n in names if r in figures["sets"][n]["rules"]}
        return "/".join({True: "page", False: "digest", None: "?"}[p] for p in sorted(pages, key=str))

    rows = [(f"{r} ({how(r)})", [figures["sets"][n]["rules"].get(r) for n in names]) for r in rules]
    rows += [(f"**{t}**", [figures["sets"][n][t] for n in names]) for t in ("all", "paging")]
    for label, cells in rows:
        out = []
        for f in cells:
            if f is None:
                out += ["-"] * 6
                continue
            out += [f"{f['notified']}/{f['incidents']}", _fmt(f["median_delay_min"]), _fmt(f["per_incident"]),
                    str(f["notifications"]), str(f["no_incident"]), f"{f['episodes']} ({f['episodes_no_incident']})"]
        print(f"| {label} | " + " | ".join(out) + " |")
    for n in names:
        p = figures["sets"][n]["paging"]
        print(f"{n}: paging notifications matching an incident {_fmt(p['match_share'], True)}, recall "
              f"{_fmt(p['recall'])}, median delay {_fmt(p['median_delay_min'])} min (max "
              f"{_fmt(p['max_delay_min'])}); paging groups {p['groups']}, groups per notified incident "
              f"{_fmt(p['groups_per_incident'])} (max {_fmt(p['max_groups_per_incident'])}), paging groups "
              f"matching an incident {_fmt(p['group_match_share'], True)}"
              + (f"; missed {', '.join(p['missed'])}" if p["missed"] else "")
              + (f"; most pages matching no incident: {p['no_incident_top']}" if p.get("no_incident_top") else ""))


def main(days: float, seed: int, json_path: str | None, warmup_hours: float = WARMUP.total_seconds() / 3600,
         from_json: str | None = None) -> int:
    warmup = timedelta(hours=warmup_hours)
    if from_json:  # recompute a saved run (its raw notifications) with this module's matching
        import json

        saved = json.loads(Path(from_json).read_text())
        data_start = _ts(saved["start"]) - H
        figures = refigure(saved, data_start + warmup)
    else:
        with tempfile.TemporaryDirectory(prefix="ops-bench-alerts-") as tmp:
            figures = run_alerts_bench(days, seed, Path(tmp), warmup=warmup, log=print)
    print_table(figures)
    write_figures(json_path, figures)
    return 0


__all__ = ["RULE_TARGETS", "Sent", "alert_figures", "main", "matches", "replay", "rule_set_groupings",
           "run_alerts_bench"]
