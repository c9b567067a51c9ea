"""Daily / weekly / monthly reports (orchestration.lib.reports) on the simulated month, both targets.

Uses the session fixture ``simulated_warehouses`` (tests/conftest.py; as_of = 2026-09-01 00:00
UTC, a Tuesday): daily = 2026-08-31, weekly = ISO week 2026-08-24 – 08-30, monthly = August 2026
(the data starts on 08-02, so the monthly report has no previous period to compare with).
marts.mart_anomalies is not part of that fixture's build: the module scores it on a copy of the
DuckDB warehouse and in the PostgreSQL warehouse (dropped again at the end), and uses a plain
copy of the DuckDB warehouse for the "not available" case.
"""

from __future__ import annotations

import copy
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import psycopg
import pytest
from dbquery import query_location

from orchestration.lib.anomaly.warehouse import TABLE as ANOMALIES_TABLE
from orchestration.lib.anomaly.warehouse import refresh_anomalies
from orchestration.lib.reports import PERIODS, build_report, period_for
from orchestration.lib.reports.data import MISSING, gather
from orchestration.lib.reports.render import render_html, render_markdown
from orchestration.lib.reports.svg import fmt
from orchestration.lib.settings import Location

KINDS = ("duckdb", "postgres")


def lit(at: datetime) -> str:
    return f"cast('{at.strftime('%Y-%m-%d %H:%M:%S')}+00:00' as timestamptz)"


class Built:
    def __init__(self, sw, locations: dict[str, Location], out: dict[str, Path]) -> None:
        self.sw = sw
        self.locations = locations
        self.out = out
        self.reports: dict[tuple[str, str], object] = {}

    def query(self, kind: str, sql: str) -> list[tuple]:
        return query_location(self.locations[kind], sql)


@pytest.fixture(scope="module")
def built(simulated_warehouses, tmp_path_factory):
    sw = simulated_warehouses
    tmp = tmp_path_factory.mktemp("reports")
    duck = Location.parse(str(tmp / "warehouse_scored.duckdb"))
    shutil.copy(sw.warehouses["duckdb"].path, duck.path)
    pg = sw.warehouses["postgres"]
    try:
        refresh_anomalies(duck, sw.as_of, write_days=30)
        refresh_anomalies(pg, sw.as_of, write_days=30)
        b = Built(sw, {"duckdb": duck, "postgres": pg}, {k: tmp / f"out_{k}" for k in KINDS})
        for kind in KINDS:
            for period in PERIODS:
                b.reports[(kind, period)] = build_report(b.locations[kind], period, sw.as_of, b.out[kind])
        yield b
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"drop table if exists {ANOMALIES_TABLE}")


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}"[^>]*>(.*?)</section>', html, re.S)
    assert match, section_id
    return match.group(1)


# ---------------------------------------------------------------------------------------------


def test_period_bounds():
    as_of = datetime(2026, 9, 1, tzinfo=timezone.utc)  # a Tuesday
    d, w, m = (period_for(k, as_of) for k in PERIODS)
    assert (d.start, d.end, d.prev_start) == (datetime(2026, 8, 31, tzinfo=timezone.utc), as_of,
                                              datetime(2026, 8, 30, tzinfo=timezone.utc))
    assert (w.start, w.end) == (datetime(2026, 8, 24, tzinfo=timezone.utc), datetime(2026, 8, 31, tzinfo=timezone.utc))
    assert w.prev_start == datetime(2026, 8, 17, tzinfo=timezone.utc)
    assert (m.start, m.end, m.prev_start) == (datetime(2026, 8, 1, tzinfo=timezone.utc), as_of,
                                              datetime(2026, 7, 1, tzinfo=timezone.utc))
    late = period_for("daily", as_of + timedelta(hours=23, minutes=59))
    assert late.start == d.start  # the last *full* day
    monday = period_for("weekly", datetime(2026, 8, 31, tzinfo=timezone.utc))
    assert monday.start == w.start and monday.end == w.end
    with pytest.raises(ValueError):
        period_for("yearly", as_of)
    with pytest.raises(ValueError):
        period_for("daily", datetime(2026, 9, 1))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("period", PERIODS)
def test_each_report_writes_html_and_markdown(built, kind, period):
    r = built.reports[(kind, period)]
    p = period_for(period, built.sw.as_of)
    assert r.period == period and (r.period_start, r.period_end) == (p.start, p.end)
    assert r.html_path == built.out[kind] / period / f"{period}-{p.start:%Y-%m-%d}.html"
    assert r.markdown_path == r.html_path.with_suffix(".md")
    html = r.html_path.read_text()
    assert (r.html_path.parent / "latest.html").read_bytes() == r.html_path.read_bytes()
    assert (r.markdown_path.parent / "latest.md").read_text() == r.markdown == r.markdown_path.read_text()
    assert r.sections == ["headline", "error-trends", "templates", "jobs", "posting", "slo", "shutdowns",
                          "anomalies"]
    for sid in r.sections:
        assert f'<section id="{sid}"' in html
    # self-contained: no scripts, no external references
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<link" not in html
    for chart in ("error-trends", "error-rate", "top-templates", "job-failures", "posting-health", "slo-scorecard",
                  "anomalies"):
        match = re.search(rf'<svg class="chart" data-chart="{chart}" data-marks="(\d+)"', html)
        assert match and int(match.group(1)) > 0, chart
    assert f"<title>{r.title}</title>" in html


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("period", PERIODS)
def test_headline_numbers_agree_with_independent_sql(built, kind, period):
    r = built.reports[(kind, period)]
    p = period_for(period, built.sw.as_of)
    h = r.headline
    lo, hi, plo = lit(p.start), lit(p.end), lit(p.prev_start)
    # errors: the trend's error definition (int_events_classified.is_error; fct_system_events.is_error
    # is severity only), counted on the events
    (errors,), = built.query(kind, "select count(*) from intermediate.int_events_classified "
                                   f"where is_error and created_at >= {lo} and created_at < {hi}")
    assert h["errors"] == errors > 0
    (errors_prev,), = built.query(kind, "select count(*) from intermediate.int_events_classified "
                                        f"where is_error and created_at >= {plo} and created_at < {lo}")
    assert h["errors_prev"] == (errors_prev if period != "monthly" else "n/a")
    (shutdowns,), = built.query(kind, f"""select count(*) from marts.mart_shutdown_episodes
        where shutdown_start_at < {hi} and coalesce(shutdown_end_at, {lit(built.sw.as_of)}) > {lo}""")
    assert h["shutdowns"] == shutdowns
    (anomalies, critical), = built.query(kind, f"""select count(*), sum(case when severity = 'critical' then 1 else 0 end)
        from marts.mart_anomalies where bucket >= {lo} and bucket < {hi}""")
    assert h["anomalies"] == anomalies > 0 and h["anomalies_critical"] == int(critical)
    (posts,), = built.query(kind, "select sum(n_posted) from marts.mart_posting_health_daily "
                                  f"where day_start >= {lo} and day_start < {hi}")
    assert h["posts"] == int(posts) > 0
    (failures,), = built.query(kind, "select sum(failures) from marts.mart_job_performance "
                                     f"where period = 'day' and period_start >= {lo} and period_start < {hi}")
    assert h["job_failures"] == int(failures)
    (missed,), = built.query(kind, "select count(*) from marts.mart_slo_scorecard "
                                   f"where status = 'missed' and week_start < {hi} and week_end > {lo}")
    assert h["slo_missed"] == missed
    html = r.html_path.read_text()
    # every anomaly of the period is a row of the table and a point of the chart
    assert section(html, "anomalies").count("<tr>") == anomalies + 1
    assert len(re.findall(r'<circle class="mark point"', section(html, "anomalies"))) == anomalies
    assert section(html, "shutdowns").count("<tr>") == (shutdowns + 1 if shutdowns else 0)


def test_the_periods_hold_the_simulated_incidents(built):
    h = {p: built.reports[("duckdb", p)].headline for p in PERIODS}
    assert h["monthly"]["shutdowns"] >= h["weekly"]["shutdowns"] >= h["daily"]["shutdowns"]
    assert h["monthly"]["shutdowns"] > 0 and h["monthly"]["shutdown_minutes"] > 0
    assert h["monthly"]["errors"] > h["weekly"]["errors"] > h["daily"]["errors"]
    # no previous month in the data: no fake change
    assert h["monthly"]["errors_prev"] == "n/a" and "no previous data" in built.reports[("duckdb", "monthly")].markdown


@pytest.mark.parametrize("period", PERIODS)
def test_duckdb_and_postgres_reports_are_the_same(built, period):
    duck, pg = built.reports[("duckdb", period)], built.reports[("postgres", period)]
    assert duck.headline == pg.headline
    assert duck.title == pg.title
    assert duck.html_path.read_bytes() == pg.html_path.read_bytes()
    strip = lambda md: [line for line in md.splitlines() if not line.startswith("Report: ")]  # noqa: E731
    assert strip(duck.markdown) == strip(pg.markdown)


@pytest.mark.parametrize("kind", KINDS)
def test_rebuilding_writes_byte_identical_files(built, kind):
    before = {p: p.read_bytes() for p in sorted(built.out[kind].rglob("*")) if p.is_file()}
    again = build_report(built.locations[kind], "weekly", built.sw.as_of, built.out[kind])
    after = {p: p.read_bytes() for p in sorted(built.out[kind].rglob("*")) if p.is_file()}
    assert before == after
    assert again == built.reports[(kind, "weekly")]


@pytest.mark.parametrize("period", PERIODS)
def test_markdown_summary_is_short_and_holds_the_headline(built, period):
    r = built.reports[("duckdb", period)]
    lines = r.markdown.splitlines()
    assert len(lines) <= 20
    h = r.headline
    for key in ("errors", "posts", "job_failures", "shutdowns", "anomalies", "slo_missed"):
        assert fmt(h[key]) in r.markdown, key
    assert f"{h['error_rate'] * 100:.2f}%" in r.markdown
    assert lines[-1] == f"Report: {r.html_path}"
    if h["worst_job"] != "n/a":
        assert f"worst job: {h['worst_job']}" in r.markdown


def test_text_from_the_data_is_escaped(built):
    """A template, a job, an anomaly series and a shutdown reason carrying markup render as text."""
    data = copy.deepcopy(gather(built.locations["duckdb"], period_for("weekly", built.sw.as_of)))
    evil = '<script>alert("x")</script> & \'q\' <b>'
    data.sections["templates"].data["top"][0]["template"] = evil
    data.sections["templates"].data["risers"] = [dict(data.sections["templates"].data["top"][0], change=9)]
    job_cells = data.sections["jobs"].data["cells"]
    job = job_cells[0]["job_name"]
    for c in job_cells:
        if c["job_name"] == job:
            c["job_name"] = evil
    data.sections["jobs"].data["jobs"][0]["job_name"] = evil
    anomalies = data.sections["anomalies"].data
    old = anomalies["anomalies"][0]["series"]
    for a in anomalies["anomalies"]:
        if a["series"] == old:
            a["series"] = evil
    anomalies["series"] = sorted({a["series"] for a in anomalies["anomalies"]})
    data.sections["shutdowns"].data["episodes"][0]["dominant_block_reason"] = evil
    html = render_html(data)
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27; &lt;b&gt;" in html
    md = render_markdown(data, "/tmp/x.html")
    assert "`<script>alert(" in md  # Markdown (Slack) keeps the text, in a code span


def test_missing_mart_says_not_available(built, tmp_path):
    """A warehouse without marts.mart_anomalies (the fixture's plain build): the section says so."""
    plain = Location.parse(str(tmp_path / "plain.duckdb"))
    shutil.copy(built.sw.warehouses["duckdb"].path, plain.path)
    with duckdb.connect(str(plain.path)) as conn:
        conn.execute(f"drop table if exists {ANOMALIES_TABLE}")
    r = build_report(plain, "daily", built.sw.as_of, tmp_path / "out")
    html = r.html_path.read_text()
    anomalies = section(html, "anomalies")
    assert "not available: marts.mart_anomalies missing" in anomalies
    assert 'data-chart="anomalies" data-marks="0" data-empty="true"' in anomalies
    assert r.headline["anomalies"] == "n/a"
    assert r.headline["errors"] == built.reports[("duckdb", "daily")].headline["errors"]
    assert "not available: marts.mart_anomalies missing" in r.markdown


def test_a_period_before_the_data_says_no_data(built, tmp_path):
    r = build_report(built.locations["duckdb"], "weekly", datetime(2026, 3, 2, tzinfo=timezone.utc), tmp_path)
    html = r.html_path.read_text()
    for sid in ("error-trends", "templates", "jobs", "posting", "slo", "shutdowns", "anomalies"):
        body = section(html, sid)
        assert "no data in this period" in body, sid
        assert 'data-marks="0" data-empty="true"' in body, sid
    assert r.headline["errors"] == "n/a" and r.headline["posts"] == "n/a"


def test_an_empty_warehouse_builds_a_report_of_notes(tmp_path):
    empty = Location.parse(str(tmp_path / "empty.duckdb"))
    duckdb.connect(str(empty.path)).close()
    r = build_report(empty, "monthly", datetime(2026, 9, 1, tzinfo=timezone.utc), tmp_path / "out")
    html = r.html_path.read_text()
    assert html.count("not available:") >= 7
    assert set(r.headline.values()) == {"n/a"}
    assert len(r.markdown.splitlines()) <= 20


def test_missing_sections_are_flagged_in_the_data(tmp_path):
    empty = Location.parse(str(tmp_path / "empty.duckdb"))
    duckdb.connect(str(empty.path)).close()
    data = gather(empty, period_for("daily", datetime(2026, 9, 1, tzinfo=timezone.utc)))
    assert {s.status for s in data.sections.values()} == {MISSING}
    assert data.sections["templates"].note == ("not available: marts.fct_system_events, marts.error_event_templates, "
                                               "marts.error_template_aliases, marts.mart_error_templates missing")


def test_svg_primitives_count_their_marks_and_escape_labels():
    from orchestration.lib.reports import svg

    bars = svg.bar_chart("b", "t <1>", ["a", "b&c", "d"], [svg.Series("x", [1, 0, None], "#000"),
                                                           svg.Series("y<", [2, 3, 4], "#111")],
                         lines=[svg.Series("prev", [1, None, 2], "#222", dashed=True)], x_label="x", y_label="y")
    assert 'data-chart="b" data-marks="6"' in bars  # 4 bars (zero / None skipped) + 2 single points
    assert bars.count('class="mark') == 6 and "b&amp;c" in bars and "y&lt;" in bars and "<1>" not in bars
    heat = svg.heatmap("h", "t", ["r1", "<r2>"], ["c1", "c2"], {(0, 1): svg.Cell(3, "#f00", "tip <x>", "3")})
    assert 'data-marks="1"' in heat and "tip &lt;x&gt;" in heat and "&lt;r2&gt;" in heat
    empty = svg.placeholder("p", "no data in this period")
    assert 'data-marks="0" data-empty="true"' in empty and "no data in this period" in empty
    line = svg.line_chart("l", "t", ["a", "b"], [svg.Series("rate", [0.1, 0.3], "#000")], y_format="{:.0%}")
    assert line.count('class="mark line"') == 1 and line.count('class="mark point"') == 2 and "40%" in line
