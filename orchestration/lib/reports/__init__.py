"""Daily / weekly / monthly operations reports: one self-contained HTML page with inline-SVG
charts and a short Markdown summary for Slack, built from the warehouse's marts.

``build_report(location, period, as_of, out_dir)`` reads the warehouse (read-only, DuckDB or
PostgreSQL) and writes ``out_dir/<period>/<period>-<period_start:%Y-%m-%d>.html`` and ``.md``
plus ``out_dir/<period>/latest.html`` / ``latest.md`` (copies, overwritten).

**Periods (calendar-aligned, UTC).** The report covers the last *full* period ending at or
before ``as_of``:

- ``daily``: the UTC day before the day of as_of (``[day - 1 d, day)``, where day = as_of
  floored to midnight), charted per hour;
- ``weekly``: the ISO week (Monday 00:00 – Monday 00:00 UTC) ending at or before as_of,
  charted per day;
- ``monthly``: the calendar month ending at or before as_of, charted per day.

Changes ("deltas") compare with the previous period of the same kind (the day / ISO week /
calendar month before; months may differ in length, so compare the rates). When the data does
not cover the whole previous period (the first event of marts.fct_system_events is after its
start) no change is shown ("n/a"): a young warehouse shows no fake rises.

Definitions: errors = the ``total`` series of marts.mart_error_trends_hourly (error events of
int_events_classified), error rate = errors / operations; posts and success rate from
marts.mart_posting_health_hourly (daily) or _daily; shutdowns = episodes of
marts.mart_shutdown_episodes overlapping the period (an ongoing one ends at as_of), minutes
clipped to the period; anomalies = rows of marts.mart_anomalies whose bucket is in the period;
top templates and risers = error events of the period per live template (the mined
marts.error_event_templates through marts.error_template_aliases, texts from
marts.mart_error_templates; risers by the rule of mart_template_rank_7d_30d, +5 events and
×1.5), counted for the exact period rather than read from the mart's as_of-anchored 7/30-day
windows; job failures from intermediate.int_job_runs (heatmap) and marts.mart_job_performance
(daily rows of the period); SLOs from marts.mart_slo_scorecard, the ISO weeks overlapping the
period.

The output depends only on the warehouse content and ``as_of`` (no wall-clock time), so a
rebuild writes byte-identical files. A missing relation makes its section say "not available:
<relation> missing"; a period without rows says "no data in this period".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestration.lib.reports.data import gather
from orchestration.lib.reports.period import PERIODS, Period, period_for
from orchestration.lib.reports.render import SECTION_ORDER, render_html, render_markdown, title_of
from orchestration.lib.settings import Location


@dataclass(frozen=True)
class Report:
    period: str
    period_start: datetime
    period_end: datetime  # exclusive
    html_path: Path
    markdown_path: Path
    markdown: str  # the short Slack summary (also written to markdown_path)
    title: str
    headline: dict[str, float | int | str]  # "n/a" where there is no value
    sections: list[str]  # section ids, in page order ("headline", "error-trends", …)


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


def build_report(location: Location, period: str, as_of: datetime, out_dir: Path) -> Report:
    """Build one report (see the module doc) and return where it was written with its summary."""
    p: Period = period_for(period, as_of)
    data = gather(location, p)
    folder = Path(out_dir) / period
    folder.mkdir(parents=True, exist_ok=True)
    html_path = folder / f"{period}-{p.start:%Y-%m-%d}.html"
    md_path = folder / f"{period}-{p.start:%Y-%m-%d}.md"
    html = render_html(data)
    markdown = render_markdown(data, str(html_path))
    for path, text in ((html_path, html), (md_path, markdown), (folder / "latest.html", html),
                       (folder / "latest.md", markdown)):
        _write_if_changed(path, text)
    headline = {k: ("n/a" if v is None else v) for k, v in data.headline.items()}
    return Report(period=period, period_start=p.start, period_end=p.end, html_path=html_path,
                  markdown_path=md_path, markdown=markdown, title=title_of(data), headline=headline,
                  sections=list(SECTION_ORDER))


__all__ = ["PERIODS", "Report", "build_report", "period_for"]
