"""The event payload contract, evaluated from the rows of marts.mart_event_contract_violations.

The mart (dbt, models/marts/quality/) counts, per family × writer × payload column × rule ×
required field, the events of the window that lacked a field the contract (seed
``event_contracts``) requires: the checklist's 1.2 "enhanced error logging" context (job name,
decision_id, timestamp, error type). This module turns those rows into a verdict and a readable
summary, with configurable thresholds; it has no Dagster in it, so it can be called on a few
hand-made rows (tests) or on the mart read from any warehouse (``read_contract_mart``).

    rows = read_contract_mart(Location.parse("data/warehouse.duckdb"))
    result = evaluate_contract(rows, ContractThresholds(max_violation_rate=0.01))
    print(result.summary)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestration.lib.db import read_query
from orchestration.lib.settings import Location

CONTRACT_MART = "marts.mart_event_contract_violations"
CONTRACT_COLUMNS = (
    "window_start", "window_end", "family", "writer", "payload_column", "rule_id", "required_field",
    "n_events", "n_violations", "violation_rate", "first_violation_at", "last_violation_at",
    "example_event_id", "example_event_type",
)


@dataclass(frozen=True)
class ContractThresholds:
    """When a mart row (one writer × rule × required field) breaks the contract.

    A row fails when it has more than ``max_violations`` violations AND its violation rate is
    above ``max_violation_rate``; rows with fewer than ``min_events`` events checked are not
    judged. The defaults fail on any violation at all (the contract is meant to hold exactly).
    A row that does not fail but whose rate is above ``warn_violation_rate`` (when set) is listed
    as a warning without failing the check.
    """

    max_violation_rate: float = 0.0
    max_violations: int = 0
    min_events: int = 1
    warn_violation_rate: float | None = None
    top_n: int = 20  # rows shown in the summary / Markdown table

    def __post_init__(self) -> None:
        if not 0 <= self.max_violation_rate <= 1:
            raise ValueError("max_violation_rate must be within 0..1")
        if self.warn_violation_rate is not None and not 0 <= self.warn_violation_rate <= 1:
            raise ValueError("warn_violation_rate must be within 0..1")
        if self.max_violations < 0 or self.min_events < 1 or self.top_n < 1:
            raise ValueError("max_violations >= 0, min_events >= 1 and top_n >= 1 are required")


@dataclass(frozen=True)
class ContractViolation:
    """One mart row with violations: a writer that logs without some required context."""

    family: str
    writer: str
    payload_column: str
    rule_id: str
    required_field: str
    n_events: int
    n_violations: int
    violation_rate: float
    example_event_id: str | None
    example_event_type: str | None
    fails: bool  # beyond the thresholds (else: a warning or below the warn level)

    @property
    def writer_label(self) -> str:
        return self.writer if self.payload_column == "event_data" else f"{self.writer} [{self.payload_column}]"


@dataclass
class ContractResult:
    passed: bool
    n_rows: int  # mart rows (writer × rule × field) judged
    n_events: int  # distinct events checked (each is judged by one rule)
    n_field_checks: int  # events × required fields
    n_violations: int  # missing fields, summed over the rows
    failing: list[ContractViolation] = field(default_factory=list)
    warnings: list[ContractViolation] = field(default_factory=list)
    violations: list[ContractViolation] = field(default_factory=list)  # every row with n_violations > 0
    per_family: dict[str, dict[str, int]] = field(default_factory=dict)
    window_start: Any = None
    window_end: Any = None
    thresholds: ContractThresholds = field(default_factory=ContractThresholds)

    @property
    def worst_writers(self) -> list[tuple[str, int]]:
        """(writer label, missing fields) over every rule and field, most first."""
        totals: dict[str, int] = {}
        for v in self.violations:
            totals[v.writer_label] = totals.get(v.writer_label, 0) + v.n_violations
        return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))

    @property
    def summary(self) -> str:
        window = f" in ({self.window_start}, {self.window_end}]" if self.window_end is not None else ""
        if not self.n_rows:
            return f"event payload contract: no events matched a contract rule{window}"
        head = (f"event payload contract {'passed' if self.passed else 'FAILED'}{window}: "
                f"{self.n_events:,} events checked, {self.n_violations:,} missing fields in "
                f"{len(self.violations)} writer/field combinations ({len(self.failing)} beyond the thresholds)")
        lines = [head]
        if self.per_family:
            lines.append("per family: " + "; ".join(
                f"{family} {c['violations']:,}/{c['field_checks']:,} fields missing"
                for family, c in sorted(self.per_family.items())))
        if self.worst_writers:
            lines.append("worst writers: " + ", ".join(
                f"{writer} ({n:,})" for writer, n in self.worst_writers[: self.thresholds.top_n]))
        return "\n".join(lines)

    def markdown_table(self) -> str:
        """The writers without context (most violations first), as a Markdown table."""
        if not self.violations:
            return "No writer logs without the required context in the window."
        shown = self.violations[: self.thresholds.top_n]
        lines = ["| family | writer | payload | missing field | violations / events | rate | example event | verdict |",
                 "|---|---|---|---|---|---|---|---|"]
        for v in shown:
            verdict = "fail" if v.fails else ("warn" if v in self.warnings else "below threshold")
            example = f"`{v.example_event_id}` ({v.example_event_type})" if v.example_event_id else ""
            lines.append(f"| {v.family} | `{v.writer}` | {v.payload_column} | `{v.required_field}` | "
                         f"{v.n_violations:,} / {v.n_events:,} | {v.violation_rate:.1%} | {example} | {verdict} |")
        if len(self.violations) > len(shown):
            lines.append(f"\n… and {len(self.violations) - len(shown)} more rows in `{CONTRACT_MART}`.")
        return "\n".join(lines)


def _records(rows: Any) -> list[Mapping[str, Any]]:
    """A list of mappings from a list of dicts or a pandas / polars-like DataFrame."""
    if hasattr(rows, "to_dict"):
        return list(rows.to_dict("records"))
    if hasattr(rows, "to_dicts"):
        return list(rows.to_dicts())
    return list(rows)


def evaluate_contract(rows: Iterable[Mapping[str, Any]] | Any,
                      thresholds: ContractThresholds | None = None) -> ContractResult:
    """Judge mart rows (dicts with at least family, writer, rule_id, required_field, n_events,
    n_violations; optional payload_column, violation_rate, example_event_id, example_event_type,
    window_start, window_end) against the thresholds."""
    th = thresholds or ContractThresholds()
    records = _records(rows)
    violations: list[ContractViolation] = []
    failing: list[ContractViolation] = []
    warnings: list[ContractViolation] = []
    per_family: dict[str, dict[str, int]] = {}
    events_by_group: dict[tuple, int] = {}
    n_field_checks = n_missing = 0
    window_start = window_end = None
    for r in records:
        n_events, n_viol = int(r["n_events"]), int(r["n_violations"])
        if n_viol < 0 or n_viol > n_events:
            raise ValueError(f"inconsistent contract row (n_violations {n_viol}, n_events {n_events}): {dict(r)}")
        payload_column = r.get("payload_column") or "event_data"
        family = str(r["family"])
        # the events of one writer × rule are the same for each of its required fields
        group = (family, r["writer"], payload_column, r["rule_id"])
        events_by_group[group] = max(events_by_group.get(group, 0), n_events)
        counts = per_family.setdefault(family, {"field_checks": 0, "violations": 0, "rows_violated": 0})
        counts["field_checks"] += n_events
        counts["violations"] += n_viol
        n_field_checks += n_events
        n_missing += n_viol
        window_start = window_start if r.get("window_start") is None else r["window_start"]
        window_end = window_end if r.get("window_end") is None else r["window_end"]
        if n_viol == 0:
            continue
        counts["rows_violated"] += 1
        rate = r.get("violation_rate")
        rate = float(rate) if rate is not None else n_viol / n_events
        judged = n_events >= th.min_events
        fails = judged and n_viol > th.max_violations and rate > th.max_violation_rate
        v = ContractViolation(
            family=family, writer=str(r["writer"]), payload_column=payload_column,
            rule_id=str(r["rule_id"]), required_field=str(r["required_field"]), n_events=n_events,
            n_violations=n_viol, violation_rate=rate,
            example_event_id=None if r.get("example_event_id") is None else str(r["example_event_id"]),
            example_event_type=r.get("example_event_type"), fails=fails,
        )
        violations.append(v)
        if fails:
            failing.append(v)
        elif judged and th.warn_violation_rate is not None and rate > th.warn_violation_rate:
            warnings.append(v)
    order = lambda v: (-v.n_violations, -v.violation_rate, v.family, v.writer, v.payload_column,  # noqa: E731
                       v.rule_id, v.required_field)
    violations.sort(key=order)
    failing.sort(key=order)
    warnings.sort(key=order)
    for family, counts in per_family.items():
        counts["events"] = sum(n for (f, *_), n in events_by_group.items() if f == family)
    return ContractResult(
        passed=not failing, n_rows=len(records), n_events=sum(events_by_group.values()),
        n_field_checks=n_field_checks, n_violations=n_missing, failing=failing, warnings=warnings,
        violations=violations, per_family=per_family, window_start=window_start,
        window_end=window_end, thresholds=th,
    )


def read_contract_mart(warehouse: Location, relation: str = CONTRACT_MART) -> list[dict[str, Any]]:
    """Every row of the contract mart on a DuckDB or PostgreSQL warehouse, as dicts."""
    names, rows = read_query(warehouse, f"select {', '.join(CONTRACT_COLUMNS)} from {relation}")
    return [dict(zip(names, row)) for row in rows]


def check_contract(warehouse: Location, thresholds: ContractThresholds | None = None) -> ContractResult:
    """Read the contract mart from the warehouse and evaluate it."""
    return evaluate_contract(read_contract_mart(warehouse), thresholds)
