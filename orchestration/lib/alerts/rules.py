"""Alert rules: the built-in rules of the checklist and custom rules from a YAML file.

A rule is a :class:`RuleSpec`. Built-in rules (``kind="builtin"``) are evaluated by code in
:mod:`orchestration.lib.alerts.ledger` that reads the marts and yields one value per subject; the
rule's ``condition`` (an operator and a threshold) decides whether the subject is firing. Their
thresholds, windows, severities, labels, routing, repeat intervals and inhibitions can be
overridden in the rules file under ``builtin_overrides:``.

Custom rules (``rules:`` in the file) are either

- ``kind: sql`` — a query returning rows ``(subject, value)``; ``:window_start`` and ``:now`` in
  the text are replaced by timestamp literals before it runs. Exactly one read-only query
  (``select``/``with``/``values``/``from``); several statements or a data-modifying keyword
  are refused when the file is loaded (:func:`sql_query_problem`), and the warehouse runs it
  read-only, rolled back and under a timeout (``ledger.run_read_only``); or
- ``kind: metric`` — a mart column aggregated per subject over the window:
  ``metric: {relation: marts.x, value: "sum(n_errors)", subject: job_name, time_column: hour_start}``
  (optional ``filter``: an SQL predicate on the relation).

:func:`load_rules` validates the file when it is loaded and raises :class:`RulesFileError`, whose
message names the file, the line and the problem. See ``alerts/README.md`` for the format.

Incident grouping (``grouping:`` in the file, :class:`Grouping`, :func:`load_grouping`): the
notifications of paging rules that fire while an incident group is open join that group, so one
incident pages as one group of messages (Alertmanager's grouping, across rules).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

SEVERITIES = ("info", "warning", "critical")
# how a rule's notifications reach the operator: "page" sends each as it happens; "digest" holds
# them for one message a day (tick.DIGEST_HOUR), for rules that also fire on ordinary hours
DELIVERIES = ("page", "digest")
KINDS = ("builtin", "sql", "metric")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
INHIBIT_MATCHES = ("any_subject", "same_subject")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class RulesFileError(ValueError):
    """A rules or silences file that does not validate; the message names the file and line."""


@dataclass(frozen=True)
class Threshold:
    """The condition of a rule: ``value <op> threshold``."""

    op: str
    threshold: float

    def holds(self, value: float | None) -> bool:
        return value is not None and OPERATORS[self.op](float(value), float(self.threshold))

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Inhibit:
    """``rule``'s alerts are silenced while the inhibiting rule fires (for any subject, or only
    for the inhibiting alert's own subject)."""

    rule: str
    match: str = "any_subject"


@dataclass(frozen=True)
class RuleSpec:
    name: str
    kind: str  # builtin | sql | metric
    condition: Threshold
    window: timedelta
    severity: str = "warning"
    description: str = ""
    metric: dict[str, str] | None = None  # kind metric: relation, value, subject, time_column[, filter]
    sql: str | None = None  # kind sql
    labels: dict[str, str] = field(default_factory=dict)
    routing: tuple[str, ...] = ()  # channel names; empty = delivery's default channels
    repeat_interval: timedelta = timedelta(hours=4)
    group_by: tuple[str, ...] = ()  # label names (or "subject") splitting a rule's group
    inhibits: tuple[Inhibit, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  # built-in specific knobs
    line: int | None = None  # where the rule was defined (custom rules)
    delivery: str = "page"  # page | digest (see DELIVERIES)


@dataclass(frozen=True)
class Grouping:
    """How the ledger groups paging notifications into incidents (``grouping:`` in the rules file).

    A paging notification joins the open incident group with the same values of the ``by`` labels
    (empty: one group across every paging rule); a group stays open while one of its alerts is
    still firing or its last activity (a firing, a resolution) is less than ``window`` ago.
    ``enabled: false`` gives every rule its own group per evaluation, as digest rules have."""

    by: tuple[str, ...] = ()
    window: timedelta = timedelta(hours=2)
    enabled: bool = True


DEFAULT_GROUPING = Grouping()


def _b(name: str, op: str, threshold: float, window: timedelta, severity: str, description: str,
       repeat: timedelta = timedelta(hours=4), inhibits: tuple[Inhibit, ...] = (),
       params: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
       delivery: str = "page") -> RuleSpec:
    return RuleSpec(name=name, kind="builtin", condition=Threshold(op, threshold), window=window,
                    severity=severity, description=description, repeat_interval=repeat,
                    inhibits=inhibits, params=params or {}, labels=labels or {}, delivery=delivery)


# per-job rules a system-wide outage explains
_PER_JOB = ("consecutive_job_failures", "stale_job")

# the events that mean the bot stopped posting (the checklist's "critical errors": shutdowns):
# a circuit breaker stuck open for an hour or more. Every other severity-critical event (a
# tracked critical error, a job's consecutive failures, an expired session) happens on ordinary
# hours of this bot (91 alert episodes a simulated month outside any incident): critical_events,
# in the daily digest.
SHUTDOWN_EVENT_TYPES = ("circuit_breaker_stuck",)

BUILTIN_RULES: dict[str, RuleSpec] = {r.name: r for r in (
    _b("system_shutdown", ">", 0, timedelta(hours=1), "critical",
       "The bot is shut down: an ongoing episode in marts.mart_shutdown_episodes (or one that "
       "began and ended since the previous evaluation, notified once).",
       repeat=timedelta(hours=1), labels={"scope": "system"},
       inhibits=tuple(Inhibit(r) for r in (*_PER_JOB, "errors_per_hour", "error_rate_increase",
                                           "null_tweet_ids", "circuit_breaker"))),
    _b("critical_errors", ">", 0, timedelta(hours=1), "critical",
       "Shutdown-level events of severity critical in the window (marts.fct_system_events; "
       "params.event_types, default a circuit breaker stuck open).",
       repeat=timedelta(hours=1), labels={"scope": "system"},
       params={"event_types": list(SHUTDOWN_EVENT_TYPES)}),
    _b("critical_events", ">", 0, timedelta(hours=1), "critical",
       "Events of severity critical in the window, of any type (marts.fct_system_events).",
       repeat=timedelta(hours=1), labels={"scope": "system"}, delivery="digest"),
    _b("consecutive_job_failures", ">", 3, timedelta(days=7), "warning",
       "A job's trailing run of consecutive failures (intermediate.int_job_runs).",
       labels={"scope": "job"}),
    _b("error_rate_increase", ">", 50, timedelta(hours=1), "warning",
       "Errors of the last complete hour, or of the hour in progress projected to a whole hour "
       "(n / max(elapsed share, params.partial_min_share 0.5)), vs the mean of the 24 hours before, "
       "in percent (marts.mart_error_trends_hourly).",
       params={"dimension": "total", "min_errors": 5}, labels={"scope": "system"}, delivery="digest"),
    _b("errors_per_hour", ">", 10, timedelta(hours=1), "warning",
       "Error events in the window (marts.fct_system_events): a rolling window ending at the "
       "evaluation, always a whole hour of data (no bucket in progress).", labels={"scope": "system"},
       delivery="digest"),
    _b("null_tweet_ids", ">", 5, timedelta(hours=1), "warning",
       "Posted decisions without a tweet id, in the last complete hour or in the hour in progress "
       "projected to a whole hour: n / max(elapsed share, params.partial_min_share 0.5), i.e. the "
       "count against the threshold prorated to the elapsed share, at least half of it "
       "(marts.mart_posting_health_hourly).", labels={"scope": "posting"}),
    _b("circuit_breaker", ">", 0, timedelta(hours=6), "critical",
       "A circuit breaker opened or stuck open and not reset since (marts.fct_system_events).",
       repeat=timedelta(hours=1), labels={"scope": "posting"},
       inhibits=(Inhibit("null_tweet_ids"), Inhibit("consecutive_job_failures")),
       # not circuit_breaker_watchdog_alert: the watchdog also reports the short openings of
       # normal operations (10 min), which close again without logging a close event, so the
       # rule would fire for its whole window on each of them; stuck = open for an hour or more
       params={"open_event_types": ["circuit_breaker_stuck", "circuit_breaker_opened"],
               "close_event_types": ["circuit_breaker_forced_reset", "circuit_breaker_closed",
                                     "circuit_breaker_reset"]}),
    _b("new_error_template", ">", 0, timedelta(days=1), "info",
       "A new error template (marts.mart_error_templates.is_new).",
       repeat=timedelta(days=1), labels={"scope": "errors"}, delivery="digest"),
    _b("anomaly", ">", 0, timedelta(hours=2), "warning",
       "An anomaly from the detector (marts.mart_anomalies) in the window.",
       # error_category:* series regroup the errors:* series by category for the operator's
       # views: on 14 simulated days (bench alerts, seed 1) 27 of their 31 pages matched no
       # incident, while the per-type series page on the same spikes
       params={"severities": ["warning", "critical"], "exclude_series_prefixes": ["error_category:"]},
       labels={"scope": "errors"}),
    # digest: a job's stale threshold is 3 intervals, which 3 failed or skipped runs in a row
    # pass on ordinary days (38 of 40 alert episodes on 14 simulated days matched no incident,
    # bench alerts); a failure streak pages through consecutive_job_failures
    _b("stale_job", ">", 0, timedelta(days=1), "warning",
       "A job past its stale threshold (marts.mart_job_performance.is_stale, latest day); "
       "value = minutes since its last success.", labels={"scope": "job"}, delivery="digest"),
    _b("stale_source", ">", 120, timedelta(days=1), "warning",
       "Minutes since a source table was last extracted (raw._extract_state.last_run_at).",
       labels={"scope": "source"}),
)}


# ---------------------------------------------------------------------------------------------
# loading


def parse_duration(value: Any) -> timedelta:
    """``90s``, ``15m``, ``4h``, ``7d`` or a number of minutes."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return timedelta(minutes=value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 4h, 7d)")
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})


class _Ctx:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, node: Node | None, problem: str) -> RulesFileError:
        line = node.start_mark.line + 1 if node is not None else 1
        return RulesFileError(f"{self.path}:{line}: {problem}")


def _compose(path: Path) -> tuple[_Ctx, Node | None]:
    ctx = _Ctx(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot read: {exc}") from exc
    try:
        return ctx, yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise RulesFileError(f"{path}:{line}: invalid YAML: {exc.problem or exc}") from exc


def _value(node: Node) -> Any:
    """A composed node as a plain Python value (safe constructor)."""
    return yaml.SafeLoader("").construct_document(node)


def _mapping(ctx: _Ctx, node: Node, what: str) -> list[tuple[ScalarNode, Node]]:
    if not isinstance(node, MappingNode):
        raise ctx.error(node, f"{what} must be a mapping")
    out = []
    seen: set[str] = set()
    for k, v in node.value:
        if not isinstance(k, ScalarNode):
            raise ctx.error(k, f"{what}: keys must be plain names")
        if k.value in seen:
            raise ctx.error(k, f"{what}: duplicate key '{k.value}'")
        seen.add(k.value)
        out.append((k, v))
    return out


def _scalar(ctx: _Ctx, node: Node, what: str) -> Any:
    if not isinstance(node, ScalarNode):
        raise ctx.error(node, f"{what} must be a single value")
    return _value(node)


def _positive_duration(ctx: _Ctx, node: Node, what: str) -> timedelta:
    """A duration field of the rules file ("30m", "2h"), positive; errors name the line."""
    raw = _scalar(ctx, node, what)
    try:
        d = parse_duration(raw)
    except ValueError as exc:
        raise ctx.error(node, f"{what}: {exc}") from None
    if d <= timedelta(0):
        raise ctx.error(node, f"{what} must be positive, got {raw!r}")
    return d


def _str_list(ctx: _Ctx, node: Node, what: str) -> tuple[str, ...]:
    if isinstance(node, ScalarNode):
        return (str(_value(node)),)
    if not isinstance(node, SequenceNode):
        raise ctx.error(node, f"{what} must be a list")
    return tuple(str(_scalar(ctx, n, what)) for n in node.value)


def _labels(ctx: _Ctx, node: Node, what: str) -> dict[str, str]:
    return {k.value: str(_scalar(ctx, v, f"{what}.{k.value}")) for k, v in _mapping(ctx, node, what)}


def _condition(ctx: _Ctx, node: Node, what: str) -> Threshold:
    """``"> 3"`` or ``{op: ">", threshold: 3}``."""
    if isinstance(node, ScalarNode):
        text = str(_value(node)).strip()
        m = re.match(r"^(>=|<=|==|!=|>|<|=)?\s*(-?\d+(?:\.\d+)?)$", text)
        if not m or not m.group(1):
            op = re.match(r"^\s*([^\d\s-]+)", text)
            if op and op.group(1) not in OPERATORS:
                raise ctx.error(node, f"{what}: unknown operator '{op.group(1)}' "
                                      f"(one of {', '.join(OPERATORS)})")
            raise ctx.error(node, f"{what}: expected '<operator> <number>', e.g. '> 3', got {text!r}")
        op = "==" if m.group(1) == "=" else m.group(1)
        return Threshold(op, float(m.group(2)))
    fields = dict((k.value, (k, v)) for k, v in _mapping(ctx, node, what))
    for key, (k, _v) in fields.items():
        if key not in ("op", "threshold"):
            raise ctx.error(k, f"{what}: unknown key '{key}' (expected op, threshold)")
    for key in ("op", "threshold"):
        if key not in fields:
            raise ctx.error(node, f"{what}: missing field '{key}'")
    op_node = fields["op"][1]
    op = str(_scalar(ctx, op_node, f"{what}.op"))
    if op not in OPERATORS:
        raise ctx.error(op_node, f"{what}: unknown operator '{op}' (one of {', '.join(OPERATORS)})")
    thr_node = fields["threshold"][1]
    thr = _scalar(ctx, thr_node, f"{what}.threshold")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)):
        raise ctx.error(thr_node, f"{what}: threshold must be a number, got {thr!r}")
    return Threshold(op, float(thr))


def _inhibits(ctx: _Ctx, node: Node, what: str) -> tuple[Inhibit, ...]:
    if not isinstance(node, SequenceNode):
        raise ctx.error(node, f"{what} must be a list of rule names or {{rule, match}} mappings")
    out = []
    for item in node.value:
        if isinstance(item, ScalarNode):
            out.append((item, Inhibit(str(_value(item)))))
            continue
        fields = dict((k.value, (k, v)) for k, v in _mapping(ctx, item, what))
        for key, (k, _v) in fields.items():
            if key not in ("rule", "match"):
                raise ctx.error(k, f"{what}: unknown key '{key}' (expected rule, match)")
        if "rule" not in fields:
            raise ctx.error(item, f"{what}: missing field 'rule'")
        match = str(_scalar(ctx, fields["match"][1], "match")) if "match" in fields else "any_subject"
        if match not in INHIBIT_MATCHES:
            raise ctx.error(fields["match"][1], f"{what}: unknown match '{match}' "
                                                f"(one of {', '.join(INHIBIT_MATCHES)})")
        out.append((item, Inhibit(str(_scalar(ctx, fields["rule"][1], "rule")), match)))
    return tuple(i for _n, i in out)


_GROUPING_KEYS = ("by", "window", "enabled")


def _grouping(ctx: _Ctx, node: Node) -> Grouping:
    """The ``grouping:`` section: ``{by: [label, ...], window: 2h, enabled: true}``, every key optional."""
    if isinstance(node, ScalarNode) and _value(node) is None:
        return DEFAULT_GROUPING
    fields = dict((k.value, (k, v)) for k, v in _mapping(ctx, node, "grouping"))
    for key, (k, _v) in fields.items():
        if key not in _GROUPING_KEYS:
            raise ctx.error(k, f"grouping: unknown key '{key}' (allowed: {', '.join(_GROUPING_KEYS)})")
    out: dict[str, Any] = {}
    if "by" in fields:
        node_by = fields["by"][1]
        if not isinstance(node_by, SequenceNode):
            raise ctx.error(node_by, "grouping.by must be a list of label names (e.g. [scope]; [] groups across "
                                     "every paging rule)")
        by = _str_list(ctx, node_by, "grouping.by")
        for name in by:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ctx.error(node_by, f"grouping.by: not a label name: {name!r}")
        if len(set(by)) != len(by):
            raise ctx.error(node_by, "grouping.by: a label is named twice")
        out["by"] = by
    if "window" in fields:
        out["window"] = _positive_duration(ctx, fields["window"][1], "grouping.window")
    if "enabled" in fields:
        enabled = _scalar(ctx, fields["enabled"][1], "grouping.enabled")
        if not isinstance(enabled, bool):
            raise ctx.error(fields["enabled"][1], f"grouping.enabled must be true or false, got {enabled!r}")
        out["enabled"] = enabled
    return Grouping(**out)


def load_grouping(path: str | Path | None = None) -> Grouping:
    """The rules file's ``grouping:`` section (validated); the defaults when the file or the
    section is missing."""
    if path is None or not Path(path).exists():
        return DEFAULT_GROUPING
    ctx, root = _compose(Path(path))
    if root is None:
        return DEFAULT_GROUPING
    for k, v in _mapping(ctx, root, "the rules file"):
        if k.value == "grouping":
            return _grouping(ctx, v)
    return DEFAULT_GROUPING


_COMMON_KEYS = {"condition", "window", "severity", "description", "labels", "routing",
                "repeat_interval", "group_by", "inhibits", "params", "delivery"}
_CUSTOM_KEYS = _COMMON_KEYS | {"name", "kind", "sql", "metric"}
_METRIC_KEYS = ("relation", "value", "subject", "time_column")


# keywords that only a statement changing data, schema, privileges or the session would contain
# outside strings and quoted identifiers: a rule naming one is refused at load time (the engines
# refuse them too: a read-only transaction that is rolled back, see ledger.run_read_only)
_WRITE_KEYWORDS = frozenset((
    "insert", "update", "delete", "merge", "truncate", "into", "create", "drop", "alter", "copy", "attach",
    "detach", "grant", "revoke", "vacuum", "install", "begin", "commit", "rollback", "savepoint", "lock",
    "pragma", "checkpoint"))
_QUERY_STARTS = ("select", "with", "values", "from", "table")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def sql_statements(sql: str) -> list[list[str]]:
    """The statements of ``sql`` as lists of their lower-cased words, read the way PostgreSQL and
    DuckDB lex it: ``;`` inside strings ('…', E'…', $tag$…$tag$), quoted identifiers or comments
    (``--``, nested ``/* */``) does not end a statement, and words there are not keywords.
    Empty statements (a trailing ``;``, a comment) are left out. ``(`` counts as a word."""
    statements: list[list[str]] = [[]]
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            i += 1
            while i < n:
                if escapes and sql[i] == "\\":
                    i += 2
                elif sql[i] == "'":
                    if sql.startswith("''", i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif ch == '"':
            i += 1
            while i < n:
                if sql.startswith('""', i):
                    i += 2
                elif sql[i] == '"':
                    i += 1
                    break
                else:
                    i += 1
        elif (ch == "$" and (m := _DOLLAR_TAG.match(sql, i))
              and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_"))):
            end = sql.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
            statements[-1].append("'")  # a string constant
        elif ch == ";":
            statements.append([])
            i += 1
        elif ch == "(":
            statements[-1].append("(")
            i += 1
        elif ch.isalpha() or ch == "_":
            m = _WORD.match(sql, i)
            assert m is not None
            statements[-1].append(m.group(0).lower())
            i = m.end()
        else:
            i += 1
    return [words for words in statements if words]


def sql_query_problem(sql: str) -> str | None:
    """Why ``sql`` is not exactly one read-only query (None if it is one): several statements, a
    statement that is not a query, or a data-modifying keyword (``with d as (delete …) select``)."""
    statements = sql_statements(sql)
    if not statements:
        return "the query is empty"
    if len(statements) > 1:
        return (f"{len(statements)} statements; a rule runs exactly one query "
                f"(the second starts with '{statements[1][0]}')")
    words = statements[0]
    first = next((w for w in words if w != "("), "")
    if first not in _QUERY_STARTS:
        return f"not a query: it starts with '{first}' (expected select, with, values or from)"
    bad = sorted({w for w in words if w in _WRITE_KEYWORDS})
    if bad:
        return (f"'{bad[0]}' is not allowed: custom SQL rules are read-only queries "
                f"(no insert, update, delete, create, drop, copy, attach, …)")
    return None


def _apply_fields(ctx: _Ctx, node: Node, pairs: list[tuple[ScalarNode, Node]], allowed: set[str],
                  base: dict[str, Any], channels: set[str] | None, what: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in pairs:
        key = k.value
        if key not in allowed:
            raise ctx.error(k, f"{what}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
        if key == "condition":
            out["condition"] = _condition(ctx, v, f"{what}.condition")
        elif key in ("window", "repeat_interval"):
            out[key] = _positive_duration(ctx, v, f"{what}.{key}")
        elif key == "severity":
            sev = str(_scalar(ctx, v, f"{what}.severity"))
            if sev not in SEVERITIES:
                raise ctx.error(v, f"{what}: unknown severity '{sev}' (one of {', '.join(SEVERITIES)})")
            out["severity"] = sev
        elif key == "delivery":
            how = str(_scalar(ctx, v, f"{what}.delivery"))
            if how not in DELIVERIES:
                raise ctx.error(v, f"{what}: unknown delivery '{how}' (one of {', '.join(DELIVERIES)})")
            out["delivery"] = how
        elif key == "labels":
            out["labels"] = _labels(ctx, v, f"{what}.labels")
        elif key == "routing":
            routing = _str_list(ctx, v, f"{what}.routing")
            if channels is not None:
                for name in routing:
                    if name not in channels:
                        raise ctx.error(v, f"{what}.routing: unknown channel '{name}' "
                                           f"(known: {', '.join(sorted(channels)) or 'none'})")
            out["routing"] = routing
        elif key == "group_by":
            out["group_by"] = _str_list(ctx, v, f"{what}.group_by")
        elif key == "inhibits":
            out["inhibits"] = _inhibits(ctx, v, f"{what}.inhibits")
        elif key == "params":
            out["params"] = {**out.get("params", {}),
                             **{pk.value: _value(pv) for pk, pv in _mapping(ctx, v, f"{what}.params")}}
        elif key == "metric":
            fields = dict((mk.value, (mk, mv)) for mk, mv in _mapping(ctx, v, f"{what}.metric"))
            for mkey, (mk, _mv) in fields.items():
                if mkey not in (*_METRIC_KEYS, "filter"):
                    raise ctx.error(mk, f"{what}.metric: unknown key '{mkey}' "
                                        f"(expected {', '.join(_METRIC_KEYS)}, filter)")
            for mkey in _METRIC_KEYS:
                if mkey not in fields:
                    raise ctx.error(k, f"{what}.metric: missing field '{mkey}'")
            metric = {mk: str(_scalar(ctx, fields[mk][1], f"{what}.metric.{mk}")) for mk in _METRIC_KEYS}
            for mk in ("relation", "subject", "time_column"):
                if not _IDENT.match(metric[mk]):
                    raise ctx.error(fields[mk][1], f"{what}.metric.{mk}: not a plain identifier: {metric[mk]!r}")
            if "filter" in fields:
                metric["filter"] = str(_scalar(ctx, fields["filter"][1], f"{what}.metric.filter"))
            for mk in ("value", "filter"):
                if ";" in metric.get(mk, ""):
                    raise ctx.error(fields[mk][1], f"{what}.metric.{mk}: must be one SQL expression")
                if mk in metric and (problem := sql_query_problem(f"select {metric[mk]}")):
                    raise ctx.error(fields[mk][1], f"{what}.metric.{mk}: {problem}")
            out["metric"] = metric
        elif key == "sql":
            sql = _scalar(ctx, v, f"{what}.sql")
            if not isinstance(sql, str) or not sql.strip():
                raise ctx.error(v, f"{what}.sql must be a non-empty query")
            problem = sql_query_problem(sql)
            if problem:
                raise ctx.error(v, f"{what}.sql: {problem}")
            out["sql"] = sql.strip().rstrip(";").rstrip()
        else:
            out[key] = _scalar(ctx, v, f"{what}.{key}")
    return out


def load_rules(path: str | Path | None = None, channels: Iterable[str] | None = None,
               builtins: dict[str, RuleSpec] | None = None) -> list[RuleSpec]:
    """The built-in rules (with the file's overrides) followed by the file's custom rules.

    ``path`` None or a missing file gives the built-ins unchanged. ``channels``, when given, are
    the known channel names: a ``routing`` naming another is an error.
    """
    base = dict(builtins if builtins is not None else BUILTIN_RULES)
    if path is None or not Path(path).exists():
        return list(base.values())
    path = Path(path)
    ctx, root = _compose(path)
    known_channels = set(channels) if channels is not None else None
    if root is None:
        return list(base.values())
    top = _mapping(ctx, root, "the rules file")
    custom: list[RuleSpec] = []
    name_lines: dict[str, int] = {}
    for k, v in top:
        if k.value == "builtin_overrides":
            for rk, rv in _mapping(ctx, v, "builtin_overrides"):
                if rk.value not in base:
                    raise ctx.error(rk, f"builtin_overrides: unknown built-in rule '{rk.value}' "
                                        f"(one of {', '.join(base)})")
                spec = base[rk.value]
                fields = _apply_fields(ctx, rv, _mapping(ctx, rv, rk.value), _COMMON_KEYS,
                                       {"params": dict(spec.params)}, known_channels, rk.value)
                base[rk.value] = replace(spec, **fields)
        elif k.value == "rules":
            if not isinstance(v, SequenceNode):
                raise ctx.error(v, "rules must be a list of rules")
            for item in v.value:
                pairs = _mapping(ctx, item, "rule")
                names = [pv for pk, pv in pairs if pk.value == "name"]
                if not names:
                    raise ctx.error(item, "rule: missing field 'name'")
                name = str(_scalar(ctx, names[0], "name"))
                if not _NAME.match(name):
                    raise ctx.error(names[0], f"rule name {name!r}: use lower_snake_case")
                if name in name_lines or name in base:
                    where = f"line {name_lines[name]}" if name in name_lines else "a built-in rule"
                    raise ctx.error(names[0], f"duplicate rule name '{name}' (already {where})")
                name_lines[name] = names[0].start_mark.line + 1
                what = f"rule '{name}'"
                fields = _apply_fields(ctx, item, pairs, _CUSTOM_KEYS, {}, known_channels, what)
                kind = fields.pop("kind", "sql" if "sql" in fields else "metric" if "metric" in fields else None)
                if kind is None:
                    raise ctx.error(item, f"{what}: missing field 'sql' (or 'metric')")
                if kind not in ("sql", "metric"):
                    raise ctx.error(item, f"{what}: unknown kind '{kind}' (custom rules are sql or metric)")
                if kind == "sql" and not fields.get("sql"):
                    raise ctx.error(item, f"{what}: a sql rule needs 'sql' (a query returning subject, value)")
                if kind == "metric" and not fields.get("metric"):
                    raise ctx.error(item, f"{what}: a metric rule needs 'metric'")
                for required in ("condition", "window"):
                    if required not in fields:
                        raise ctx.error(item, f"{what}: missing field '{required}'")
                fields.pop("name", None)
                custom.append(RuleSpec(name=name, kind=kind, line=item.start_mark.line + 1, **fields))
        elif k.value == "grouping":
            _grouping(ctx, v)  # validated with the rules; read by load_grouping
        else:
            raise ctx.error(k, f"unknown key '{k.value}' (expected builtin_overrides, rules, grouping)")
    rules = [*base.values(), *custom]
    names = {r.name for r in rules}
    for r in rules:
        for inh in r.inhibits:
            if inh.rule not in names:
                raise RulesFileError(f"{path}:{r.line or 1}: rule '{r.name}' inhibits unknown rule '{inh.rule}'")
    return rules
