"""Alert rules: the built-in rules, overrides from the rules file, custom rules, and validation
errors that name the file, the line and the problem."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from orchestration.lib.alerts.ledger import load_silences, render_sql
from orchestration.lib.alerts.rules import (BUILTIN_RULES, DEFAULT_GROUPING, Grouping, RulesFileError, load_grouping,
                                            load_rules)
from orchestration.lib.settings import PROJECT_ROOT


def write(tmp_path: Path, text: str, name: str = "rules.yml") -> Path:
    path = tmp_path / name
    path.write_text(text.lstrip("\n"))
    return path


def test_builtin_rules_carry_the_checklist_thresholds() -> None:
    rules = {r.name: r for r in load_rules(None)}
    assert str(rules["consecutive_job_failures"].condition) == "> 3"
    assert str(rules["error_rate_increase"].condition) == "> 50"
    assert str(rules["errors_per_hour"].condition) == "> 10"
    assert rules["errors_per_hour"].window == timedelta(hours=1)
    assert str(rules["null_tweet_ids"].condition) == "> 5"
    for name in ("system_shutdown", "critical_errors", "circuit_breaker", "new_error_template", "anomaly",
                 "stale_job", "stale_source"):
        assert name in rules
    assert {i.rule for i in rules["system_shutdown"].inhibits} >= {"consecutive_job_failures", "stale_job"}
    assert rules["consecutive_job_failures"].condition.holds(4)
    assert not rules["consecutive_job_failures"].condition.holds(3)


def test_builtin_override_changes_only_what_it_names(tmp_path) -> None:
    path = write(tmp_path, """
builtin_overrides:
  errors_per_hour:
    condition: "> 25"
    window: 30m
    severity: critical
    routing: [pager]
  consecutive_job_failures:
    condition: {op: ">=", threshold: 5}
    params: {extra: 1}
""")
    rules = {r.name: r for r in load_rules(path, channels=["pager", "slack"])}
    eph = rules["errors_per_hour"]
    assert (str(eph.condition), eph.window, eph.severity, eph.routing) == ("> 25", timedelta(minutes=30),
                                                                         "critical", ("pager",))
    assert eph.labels == BUILTIN_RULES["errors_per_hour"].labels
    assert str(rules["consecutive_job_failures"].condition) == ">= 5"
    assert rules["null_tweet_ids"] == BUILTIN_RULES["null_tweet_ids"]
    assert BUILTIN_RULES["errors_per_hour"].condition.threshold == 10  # the defaults are untouched


def test_delivery_page_or_digest(tmp_path) -> None:
    """The static rules that fire on ordinary hours go to the daily digest by default; the rules
    file can page them again (or digest any other rule); thresholds stay the checklist's."""
    digest = {n for n, r in BUILTIN_RULES.items() if r.delivery == "digest"}
    assert digest == {"errors_per_hour", "error_rate_increase", "critical_events", "new_error_template", "stale_job"}
    assert BUILTIN_RULES["critical_errors"].delivery == "page"
    assert BUILTIN_RULES["critical_errors"].params["event_types"] == ["circuit_breaker_stuck"]
    assert "event_types" not in BUILTIN_RULES["critical_events"].params  # every critical event
    path = write(tmp_path, """
builtin_overrides:
  errors_per_hour:
    delivery: page
  anomaly:
    delivery: digest
rules:
  - name: a
    sql: select 1, 2
    window: 1h
    condition: "> 3"
    delivery: digest
""")
    rules = {r.name: r for r in load_rules(path)}
    assert (rules["errors_per_hour"].delivery, str(rules["errors_per_hour"].condition)) == ("page", "> 10")
    assert rules["anomaly"].delivery == "digest" and rules["a"].delivery == "digest"
    assert rules["null_tweet_ids"].delivery == "page"


def test_the_default_rules_file_loads_and_renders() -> None:
    rules = {r.name: r for r in load_rules(PROJECT_ROOT / "alerts" / "rules.yml")}
    custom = [r for r in rules.values() if r.kind != "builtin"]
    assert 1 <= len(custom) <= 3
    now = datetime(2026, 9, 1, 12, tzinfo=timezone.utc)
    for rule in custom:
        sql = render_sql(rule, now)
        assert ":now" not in sql and ":window_start" not in sql
        assert "2026-09-01 12:00:00" in sql


BAD_CASES = [
    ("unknown top-level key", "rulez: []\n", 1, "unknown key 'rulez'"),
    ("unknown rule key",
     "rules:\n  - name: a\n    sql: select 1, 2\n    condition: '> 1'\n    window: 1h\n    severty: info\n",
     6, "unknown key 'severty'"),
    ("missing condition", "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n", 2,
     "missing field 'condition'"),
    ("missing name", "rules:\n  - sql: select 1, 2\n    window: 1h\n", 2, "missing field 'name'"),
    ("bad operator", "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition: '=> 3'\n",
     5, "unknown operator '=>'"),
    ("bad operator in mapping",
     "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition:\n      op: gt\n      threshold: 3\n",
     6, "unknown operator 'gt'"),
    ("unknown severity",
     "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition: '> 3'\n    severity: urgent\n",
     6, "unknown severity 'urgent'"),
    ("non-positive window", "rules:\n  - name: a\n    sql: select 1, 2\n    window: 0m\n    condition: '> 3'\n",
     4, "window must be positive"),
    ("bad duration", "rules:\n  - name: a\n    sql: select 1, 2\n    window: soon\n    condition: '> 3'\n",
     4, "not a duration"),
    ("duplicate name",
     "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition: '> 3'\n"
     "  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition: '> 3'\n",
     6, "duplicate rule name 'a' (already line 2)"),
    ("name of a built-in", "rules:\n  - name: stale_job\n    sql: select 1, 2\n    window: 1h\n    condition: '> 3'\n",
     2, "duplicate rule name 'stale_job'"),
    ("sql rule without sql", "rules:\n  - name: a\n    kind: sql\n    window: 1h\n    condition: '> 3'\n",
     2, "a sql rule needs 'sql'"),
    ("unknown channel",
     "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition: '> 3'\n    routing: [slack, fax]\n",
     6, "unknown channel 'fax'"),
    ("unknown built-in", "builtin_overrides:\n  nope:\n    condition: '> 1'\n", 2, "unknown built-in rule 'nope'"),
    ("override key not allowed", "builtin_overrides:\n  stale_job:\n    sql: select 1\n", 3, "unknown key 'sql'"),
    ("metric without a field",
     "rules:\n  - name: a\n    window: 1h\n    condition: '> 3'\n    metric:\n      relation: marts.x\n      value: count(*)\n"
     "      subject: job_name\n", 5, "missing field 'time_column'"),
    ("invalid yaml", "rules:\n  - name: a\n    window: [1h\n", 4, "invalid YAML"),
    ("unknown delivery", "builtin_overrides:\n  stale_job:\n    delivery: sms\n", 3, "unknown delivery 'sms'"),
    ("grouping unknown key", "grouping:\n  by: []\n  group_wait: 30s\n", 3, "grouping: unknown key 'group_wait'"),
    ("grouping by not a list", "grouping:\n  by: scope\n", 2, "grouping.by must be a list of label names"),
    ("grouping by not a name", "grouping:\n  by: [scope, 'a b']\n", 2, "grouping.by: not a label name: 'a b'"),
    ("grouping bad window", "grouping:\n  window: a while\n", 2, "grouping.window: not a duration"),
    ("grouping zero window", "grouping:\n  window: 0m\n", 2, "grouping.window must be positive"),
    ("grouping enabled not a bool", "grouping:\n  enabled: sometimes\n", 2, "grouping.enabled must be true or false"),
    ("grouping not a mapping", "grouping: [scope]\n", 1, "grouping must be a mapping"),
    ("threshold not a number",
     "rules:\n  - name: a\n    sql: select 1\n    window: 1h\n    condition:\n      op: '>'\n      threshold: many\n",
     7, "threshold must be a number"),
]


@pytest.mark.parametrize(("case", "text", "line", "problem"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_rules_files_name_the_line_and_the_problem(tmp_path, case, text, line, problem) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesFileError) as err:
        load_rules(path, channels=["slack", "pager"])
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message, message


def test_grouping_section(tmp_path) -> None:
    """``grouping:`` is read by load_grouping; absent (file or section): the defaults (across every
    paging rule, 2 h); the shipped file groups across every paging rule."""
    assert load_grouping(None) == DEFAULT_GROUPING == Grouping((), timedelta(hours=2), True)
    assert load_grouping(PROJECT_ROOT / "alerts" / "rules.yml") == DEFAULT_GROUPING
    path = write(tmp_path, "grouping:\n  by: [scope, subject]\n  window: 90m\nrules: []\n")
    assert load_grouping(path) == Grouping(("scope", "subject"), timedelta(minutes=90))
    assert load_rules(path) == load_rules(None)  # the section changes no rule
    assert load_grouping(write(tmp_path, "grouping:\n  enabled: false\n")).enabled is False
    assert load_grouping(write(tmp_path, "rules: []\n")) == DEFAULT_GROUPING


def test_custom_rules_parse(tmp_path) -> None:
    path = write(tmp_path, """
rules:
  - name: many_errors
    sql: "select job_name, count(*) from marts.fct_system_events where created_at > :window_start group by 1;"
    condition: ">= 2"
    window: 90m
    labels: {team: ops}
    group_by: [team]
    inhibits: [{rule: stale_job, match: same_subject}, anomaly]
""")
    rule = {r.name: r for r in load_rules(path)}["many_errors"]
    assert rule.kind == "sql" and rule.line == 2 and rule.window == timedelta(minutes=90)
    assert rule.labels == {"team": "ops"} and rule.group_by == ("team",)
    assert [(i.rule, i.match) for i in rule.inhibits] == [("stale_job", "same_subject"), ("anomaly", "any_subject")]
    assert not rule.sql.endswith(";")


def test_inhibiting_an_unknown_rule_is_an_error(tmp_path) -> None:
    path = write(tmp_path, "rules:\n  - name: a\n    sql: select 1, 2\n    window: 1h\n    condition: '> 3'\n"
                           "    inhibits: [no_such_rule]\n")
    with pytest.raises(RulesFileError, match=r":2: rule 'a' inhibits unknown rule 'no_such_rule'"):
        load_rules(path)


def test_silences_file(tmp_path) -> None:
    path = write(tmp_path, """
silences:
  - matcher: {rule: stale_job, subject: "metrics_*"}
    starts_at: 2026-09-01T00:00:00Z
    ends_at: 2026-09-02T00:00:00Z
    created_by: ops
    comment: scraper maintenance
""", "silences.yml")
    [s] = load_silences(path)
    assert s.matcher == {"rule": "stale_job", "subject": "metrics_*"} and s.created_by == "ops"
    assert s.active_at(datetime(2026, 9, 1, 5, tzinfo=timezone.utc))
    assert not s.active_at(datetime(2026, 9, 2, tzinfo=timezone.utc))
    assert s.matches({"rule": "stale_job", "subject": "metrics_scraper"})
    assert not s.matches({"rule": "stale_job", "subject": "poster"})

    bad = write(tmp_path, "- matcher: {rule: x}\n  ends_at: 2026-09-01T00:00:00Z\n  starts_at: 2026-09-02T00:00:00Z\n"
                          "- matcher: {rule: y}\n  until: tomorrow\n", "bad.yml")
    with pytest.raises(RulesFileError, match=r"bad.yml:2: silence: ends_at must be after starts_at"):
        load_silences(bad)
    bad.write_text("- matcher: {rule: y}\n  ends_at: 2026-09-01T00:00:00Z\n  until: tomorrow\n")
    with pytest.raises(RulesFileError, match=r"bad.yml:3: silence: unknown key 'until'"):
        load_silences(bad)
