"""The generated HTML reports render in a real browser: headless Chromium (Debian's
/usr/bin/chromium, driven by the ``playwright`` package; ``make browser`` installs it) opens the
daily, weekly and monthly reports of the simulated month (DuckDB) and checks that every
``svg.chart`` has a size and its marks, that nothing is logged to the console and that nothing
but the file itself is requested. A full-page PNG of each report is saved in the test's tmp dir
(its path is printed: ``pytest -s`` shows it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestration.lib.anomaly.warehouse import refresh_anomalies
from orchestration.lib.reports import PERIODS, build_report
from orchestration.lib.settings import Location

CHROMIUM = Path(os.environ.get("OPS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CHARTS_BY_SECTION = {"error-trends": {"error-trends", "error-rate"}, "templates": {"top-templates"},
                     "jobs": {"job-failures"}, "posting": {"posting-health"}, "slo": {"slo-scorecard"},
                     "shutdowns": {"shutdowns"}, "anomalies": {"anomalies"}}

# one round trip per page: every chart's size, its declared and drawn marks
CHARTS_JS = """() => Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = Array.from(svg.querySelectorAll('.mark'));
  const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
  const titled = marks.filter(m => m.querySelector('title') && m.querySelector('title').textContent.length > 0);
  return {name: svg.dataset.chart, section: svg.closest('section') ? svg.closest('section').id : null,
          status: svg.closest('section') ? svg.closest('section').dataset.status : null,
          width: box.width, height: box.height, declared: Number(svg.dataset.marks),
          empty: svg.dataset.empty === 'true', marks: marks.length, drawn: drawn.length,
          titled: titled.length, caption: !!(svg.closest('figure') && svg.closest('figure').querySelector('figcaption')),
          axisLabels: svg.querySelectorAll('text.axis-label, text.tick').length};
})"""


def _chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"headless Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` "
                    "(or `make browser`), or point OPS_CHROMIUM at a Chromium binary", pytrace=False)
    return CHROMIUM


def _only(url: str, blocked: list[str]):
    """A route handler letting the report's own file through and aborting (and noting) anything else."""
    def handler(route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()
    return handler


@pytest.fixture(scope="module")
def report_pages(simulated_warehouses, tmp_path_factory):
    """The three reports of the simulated month (DuckDB copy with its anomalies scored), opened in
    Chromium: per period, what the page logged and requested and its charts."""
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install -e '.[dev]'` (never `playwright install`: "
                    "the tests use Debian's chromium)", pytrace=False)
    sw = simulated_warehouses
    tmp = tmp_path_factory.mktemp("report_browser")
    wh = Location.parse(str(tmp / "warehouse.duckdb"))
    shutil.copy(sw.warehouses["duckdb"].path, wh.path)
    refresh_anomalies(wh, sw.as_of, write_days=31)
    pages = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            for period in PERIODS:
                report = build_report(wh, period, sw.as_of, tmp / "out")
                url = report.html_path.resolve().as_uri()
                page = browser.new_page(viewport={"width": 1000, "height": 900})
                console, requests, blocked = [], [], []
                page.on("console", lambda m, c=console: c.append((m.type, m.text)))
                page.on("pageerror", lambda e, c=console: c.append(("pageerror", str(e))))
                page.on("request", lambda r, rs=requests: rs.append(r.url))
                page.route("**/*", _only(url, blocked))
                page.goto(url, wait_until="load")
                charts = page.evaluate(CHARTS_JS)
                png = tmp / f"report-{period}.png"
                page.screenshot(path=str(png), full_page=True)
                print(f"\nscreenshot of the {period} report: {png}  (report: {report.html_path})")
                page.close()
                pages[period] = {"report": report, "url": url, "console": console, "requests": requests,
                                 "blocked": blocked, "charts": charts, "png": png}
        finally:
            browser.close()
    return pages


@pytest.mark.parametrize("period", PERIODS)
def test_every_chart_rendered_with_its_marks(report_pages, period):
    page = report_pages[period]
    charts = page["charts"]
    names = {c["name"] for c in charts}
    assert set().union(*CHARTS_BY_SECTION.values()) == names
    for c in charts:
        assert c["width"] > 100 and c["height"] > 50, c
        assert c["marks"] == c["declared"], c
        assert c["caption"], c
        if c["status"] == "ok":
            assert not c["empty"] and c["marks"] > 0 and c["drawn"] > 0, c
            assert c["titled"] == c["marks"], c  # a tooltip on every mark
            assert c["axisLabels"] > 0, c
        else:
            assert c["empty"] and c["marks"] == 0, c
    # the simulated month has data in every section of the weekly report
    if period == "weekly":
        assert all(c["status"] == "ok" for c in charts), [c["name"] for c in charts if c["status"] != "ok"]


@pytest.mark.parametrize("period", PERIODS)
def test_no_console_errors_and_no_network(report_pages, period):
    page = report_pages[period]
    assert page["console"] == []
    assert page["blocked"] == []
    assert set(page["requests"]) == {page["url"]}


def test_screenshots_were_saved(report_pages):
    for period in PERIODS:
        png = report_pages[period]["png"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, png
