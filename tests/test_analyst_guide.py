"""The analyst's guide (dbt docs overview, dbt_project/models/overview.md) and the columns it
promises (issue 15, item 5).

The guide is the one place its queries live: each `### question` heading is followed by the one
```sql block that answers it; this module parses them out of the Markdown, so the page an analyst
reads is the page that is tested. On the session fixture ``simulated_warehouses`` (30 simulated
days, built on DuckDB and PostgreSQL with as_of = the end of the data, 2026-09-01 00:00 UTC) every
query must run on both targets and return rows. Then the promises the guide makes about columns:
p90 between p50 and p95 in the job mart, ``is_partial`` only on the buckets holding as_of,
``pct_`` columns in percent, the checklist marts' notes. Without a warehouse: the exposures name what the reports and the
built-in alert rules read.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from orchestration.lib.settings import DBT_PROJECT_DIR

TARGETS = ("duckdb", "postgres")
GUIDE = Path(DBT_PROJECT_DIR) / "models" / "overview.md"
EXPOSURES = Path(DBT_PROJECT_DIR) / "models" / "exposures.yml"

_QUESTION = re.compile(r"^### (?P<question>.+?)\n(?P<body>.*?)(?=^### |\{% enddocs %\})", re.M | re.S)
_SQL_BLOCK = re.compile(r"^```sql\n(?P<sql>.*?)^```", re.M | re.S)


def guide_queries() -> dict[str, str]:
    """question -> its query, in the guide's order; a question must have exactly one query."""
    text = GUIDE.read_text()
    queries = {}
    for match in _QUESTION.finditer(text):
        blocks = _SQL_BLOCK.findall(match["body"])
        assert len(blocks) == 1, f"{match['question']!r}: {len(blocks)} sql blocks, want one"
        queries[match["question"].strip()] = blocks[0].strip()
    return queries


QUERIES = guide_queries()


def test_the_guide_is_a_dbt_docs_overview_with_a_query_per_question():
    text = GUIDE.read_text()
    assert text.startswith("{% docs __overview__ %}") and text.rstrip().endswith("{% enddocs %}")
    assert len(QUERIES) >= 20
    for question, sql in QUERIES.items():
        # what an analyst sees on both targets: schema-qualified marts, no dialect-only syntax
        assert re.search(r"\bfrom marts\.\w+", sql), question
        assert "::" not in sql and "interval" not in sql.lower() and "now()" not in sql.lower(), question
        assert "{{" not in sql and "{%" not in sql, question  # the docs block renders Jinja


def test_every_mart_in_the_guides_table_is_a_model_or_named_as_not_dbt():
    text = GUIDE.read_text()
    table = text[text.index("| question | mart | key columns |"):text.index("## One query per question")]
    named = set(re.findall(r"\| `((?:mart|fct)_\w+)`", table))
    models = {p.stem for p in (Path(DBT_PROJECT_DIR) / "models").rglob("*.sql")}
    assert named - models <= {"mart_anomalies"}  # written by the Dagster asset's Python scorer
    assert {"mart_error_frequency", "mart_shutdown_causes", "mart_job_performance"} <= named


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("question", list(QUERIES))
def test_every_guide_query_runs_and_answers_on_both_targets(simulated_warehouses, kind, question):
    rows = simulated_warehouses.query(kind, QUERIES[question])
    assert rows, f"{question!r} returned no rows on {kind}"


# ---------------------------------------------------------------------------------------------
# the columns the guide promises


@pytest.mark.parametrize("kind", TARGETS)
def test_job_mart_p90_lies_between_p50_and_p95(simulated_warehouses, kind):
    (n_with, n_disordered, n_p90_without_p50) = simulated_warehouses.query(kind, """
        select
            count(duration_p90_minutes),
            count(case when not (duration_p50_minutes <= duration_p90_minutes
                                 and duration_p90_minutes <= duration_p95_minutes) then 1 end),
            count(case when (duration_p90_minutes is null) <> (duration_p50_minutes is null) then 1 end)
        from marts.mart_job_performance""")[0]
    assert n_with > 0
    assert n_disordered == 0 and n_p90_without_p50 == 0


def _period_end(start: datetime, grain: str) -> datetime:
    if grain == "hour":
        return start + timedelta(hours=1)
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)  # month


# relation -> (grain expression, bucket start column, extra filter)
PARTIAL_BUCKETS = {
    "marts.mart_error_trends_hourly": ("'hour'", "hour_start", "dimension = 'total'"),
    "marts.mart_error_trends_periodic": ("grain", "period_start", "dimension = 'total'"),
    "marts.mart_posting_health_hourly": ("'hour'", "hour_start", "1 = 1"),
    "marts.mart_posting_health_daily": ("'day'", "day_start", "1 = 1"),
    "marts.mart_job_performance": ("period", "period_start", "1 = 1"),
}


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("relation", sorted(PARTIAL_BUCKETS))
def test_is_partial_marks_exactly_the_buckets_not_over_at_as_of(simulated_warehouses, kind, relation):
    sw = simulated_warehouses
    grain, start, where = PARTIAL_BUCKETS[relation]
    rows = sw.query(kind, f"""
        select distinct {grain}, {start}, is_partial from {relation} where {where}""")
    assert rows
    as_of = sw.as_of.astimezone(timezone.utc)
    newest: dict[str, datetime] = {}
    for g, bucket_start, _ in rows:
        newest[g] = max(newest.get(g, bucket_start), bucket_start)
    for g, bucket_start, is_partial in rows:
        assert is_partial is not None, (g, bucket_start)
        expected = _period_end(bucket_start.astimezone(timezone.utc), g) > as_of
        assert bool(is_partial) == expected, (g, bucket_start, is_partial)
        if is_partial:
            assert bucket_start == newest[g]  # only the newest bucket of a grain can be partial
    # as_of (2026-09-01 00:00, a Tuesday) closes the hour, the day and the month, not the ISO week
    partial = {g for g, _, p in rows if p}
    assert partial == ({"week"} if relation in ("marts.mart_error_trends_periodic",
                                                "marts.mart_job_performance") else set())


# every pct_ column of the marts: (what it is, the change it scales, the count it compares with)
PERCENT_COLUMNS = {
    ("marts.mart_error_trends_hourly", "pct_change_vs_prev_hour"): ("change_vs_prev_hour", "n_errors_prev_hour"),
    ("marts.mart_error_trends_hourly", "pct_change_vs_week_ago"): ("change_vs_week_ago", "n_errors_week_ago"),
    ("marts.mart_error_trends_periodic", "pct_change_vs_prev_period"): ("change_vs_prev_period", "n_errors_prev_period"),
    ("marts.mart_error_rank_7d_30d", "pct_change_vs_prev_window"): ("change_vs_prev_window", "n_errors_prev_window"),
    ("marts.mart_template_rank_7d_30d", "pct_change_vs_prev_window"): ("change_vs_prev_window", "n_events_prev_window"),
    ("marts.mart_checklist_job_failure_rates", "failure_rate_pct"): ("failures", "1"),
}


@pytest.mark.parametrize("kind", TARGETS)
def test_every_pct_column_is_listed_here(simulated_warehouses, kind):
    found = set(simulated_warehouses.query(kind, """
        select table_schema || '.' || table_name, column_name from information_schema.columns
        where table_schema = 'marts' and (column_name like 'pct%' or column_name like '%pct')"""))
    assert found == set(PERCENT_COLUMNS)


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize(("relation", "column"), sorted(PERCENT_COLUMNS))
def test_pct_columns_hold_percents(simulated_warehouses, kind, relation, column):
    """Each pct_ column is 100 x its ratio (a ratio, 0.5 for +50 %, would fail): a percent change
    is >= -100 (-100: none left), the checklist's failure rate 0-100."""
    part, whole = PERCENT_COLUMNS[(relation, column)]
    if column == "failure_rate_pct":  # the checklist's COUNT(*) is the job's one heartbeat row
        where = "failure_rate_pct is not null"
    else:
        where = f"{whole} > 0"
    n, low, high, n_not_percent = simulated_warehouses.query(kind, f"""
        select count({column}), min({column}), max({column}),
               count(case when abs({column} - 100.0 * ({part}) / ({whole})) > 1e-6 then 1 end)
        from {relation} where {where}""")[0]
    assert n > 0 and n_not_percent == 0
    assert low >= -100
    if column == "failure_rate_pct":
        assert high <= 100
    else:
        assert high > 1  # some rise of more than 1 % in a month of data: percents, not ratios


@pytest.mark.parametrize("kind", TARGETS)
def test_checklist_marts_explain_their_literal_numbers(simulated_warehouses, kind):
    sw = simulated_warehouses
    jobs = sw.query(kind, """
        select job_name, failures, failure_rate_pct, n_failed_runs, n_runs, checklist_note
        from marts.mart_checklist_job_failure_rates""")
    assert jobs and all(note for *_, note in jobs)
    listed = [row for row in jobs if row[1] > 0]
    assert listed, "the simulated month should leave some job's latest run failed"
    for job, failures, rate, n_failed, n_runs, note in listed:
        assert (failures, rate) == (1, 100)
        assert note.startswith("failures = 1, failure_rate_pct = 100: ") and "one current row per job" in note
        assert f"{n_failed} failed of {n_runs} runs" in note, (job, note)
    causes = sw.query(kind, """
        select shutdown_count, checklist_note from marts.mart_checklist_shutdown_causes""")
    assert causes and all(note.startswith(f"shutdown_count = {count}") for count, note in causes)


# ---------------------------------------------------------------------------------------------
# exposures: who reads the marts (no warehouse needed)


def _exposure_relations(exposure: dict) -> set[str]:
    """ref('x') / source('s', 'x') -> the schema.relation the code names."""
    out = set()
    for dep in exposure["depends_on"]:
        if m := re.fullmatch(r"ref\('(\w+)'\)", dep):
            out.add(("intermediate." if m[1].startswith("int_") else "marts.") + m[1])
        elif m := re.fullmatch(r"source\('(\w+)', '(\w+)'\)", dep):
            out.add(("raw." if m[1] == "ops" else "marts.") + m[2])
        else:
            raise AssertionError(dep)
    return out


def test_exposures_name_what_the_reports_and_the_alert_rules_read():
    from orchestration.lib.alerts.ledger import BUILTIN_EVALUATORS
    from orchestration.lib.reports import data as report_data

    exposures = {e["name"]: e for e in yaml.safe_load(EXPOSURES.read_text())["exposures"]}
    not_dbt = {"marts.mart_anomalies"}  # the Dagster asset's, named in the descriptions
    report_reads = {v for k, v in vars(report_data).items()
                    if k.isupper() and isinstance(v, str) and re.fullmatch(r"(marts|intermediate)\.\w+", v)}
    for name in ("daily_report", "weekly_report", "monthly_report"):
        assert exposures[name]["type"] == "dashboard"
        assert _exposure_relations(exposures[name]) == report_reads - not_dbt, name
    rule_reads = {rel for relations, _ in BUILTIN_EVALUATORS.values() for rel in relations}
    assert exposures["alert_rules"]["type"] == "application"
    assert _exposure_relations(exposures["alert_rules"]) == rule_reads - not_dbt
