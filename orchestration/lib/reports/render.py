"""Rendering: pure functions from ReportData to the HTML page and the Markdown summary.

Nothing here reads a database or the clock: the same data gives the same bytes. All text from
the data goes through ``html.escape`` (error templates contain ``<``, ``&`` and quotes).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from orchestration.lib.reports import svg
from orchestration.lib.reports.data import EMPTY, MISSING, OK, ReportData, SectionData
from orchestration.lib.reports.svg import PALETTE, Cell, Series, Span, fmt

SECTION_ORDER = ("headline", "error-trends", "templates", "jobs", "posting", "slo", "shutdowns", "anomalies")
SEVERITY_COLORS = {"critical": "#7f0000", "error": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4",
                   "unknown": "#7f7f7f"}
STATUS_COLORS = {"met": "#8fd18f", "missed": "#f08080", "no data": "#dddddd"}
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:960px;color:#222;
line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.meta{color:#555;font-size:13px}nav a{margin-right:10px;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px}.card .label{font-size:12px;color:#555}
.card .value{font-size:22px;font-weight:600}.card .delta{font-size:12px;color:#555}
.worse{color:#b00020!important}.better{color:#11772d!important}
table{border-collapse:collapse;width:100%;font-size:12px;margin:8px 0}
th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:11px;word-break:break-all}
.note{background:#fff8e1;border-left:3px solid #f0b400;padding:4px 8px;font-size:13px}
.status-missing{background:#fdecea;border-left-color:#b00020}
figure{margin:8px 0}figcaption{font-size:12px;color:#555}svg.chart{max-width:100%;height:auto;display:block}
.met{background:#e6f4e6}.missed{background:#fdecea}
"""


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def _dt(at: datetime | None) -> str:
    return "n/a" if at is None else at.strftime("%Y-%m-%d %H:%M")


def delta_text(value: Any, prev: Any, *, rate: bool = False) -> str:
    """``+12 (+8.5%)`` / ``-0.4 pp`` / ``n/a`` — the change vs the previous period."""
    if value is None or prev is None:
        return "n/a"
    if rate:
        return f"{(value - prev) * 100:+.1f} pp"
    change = value - prev
    text = f"{'+' if change >= 0 else '-'}{fmt(abs(change))}"
    if prev:
        text += f" ({change / prev * 100:+.1f}%)"
    return text


# ---------------------------------------------------------------------------------------------
# sections


def _note(section: SectionData) -> str:
    if not section.note:
        return ""
    cls = "note status-missing" if section.status == MISSING else "note"
    return f'<p class="{cls}">{escape(section.note)}</p>'


def _figure(chart: str, caption: str) -> str:
    return f"<figure>{chart}<figcaption>{escape(caption)}</figcaption></figure>"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Cells are already escaped HTML."""
    head = "".join(f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _unavailable(section: SectionData, chart_names: list[str]) -> str:
    message = section.note if section.status == MISSING else "no data in this period"
    return "".join(_figure(svg.placeholder(name, message), f"{section.title}: {message}") for name in chart_names)


def _headline_html(d: ReportData) -> str:
    h, prev_label = d.headline, d.period.prev_label
    cards = [
        ("Errors", fmt(h["errors"]), h["errors"], h["errors_prev"], False, True),
        ("Error rate", _pct(h["error_rate"], 2), h["error_rate"], h["error_rate_prev"], True, True),
        ("Posts", fmt(h["posts"]), h["posts"], h["posts_prev"], False, False),
        ("Post success rate", _pct(h["post_success_rate"]), h["post_success_rate"], h["post_success_rate_prev"],
         True, False),
        ("NULL tweet ids", fmt(h["null_tweet_ids"]), h["null_tweet_ids"], h["null_tweet_ids_prev"], False, True),
        ("Job failures", fmt(h["job_failures"]), h["job_failures"], h["job_failures_prev"], False, True),
        ("Shutdowns", fmt(h["shutdowns"]), h["shutdowns"], h["shutdowns_prev"], False, True),
        ("Shutdown minutes", fmt(h["shutdown_minutes"]), h["shutdown_minutes"], h["shutdown_minutes_prev"], False,
         True),
        ("Anomalies", fmt(h["anomalies"]), h["anomalies"], h["anomalies_prev"], False, True),
        ("SLO misses", fmt(h["slo_missed"]), None, None, False, True),
    ]
    out = []
    for label, shown, value, prev, rate, up_is_bad in cards:
        cls = ""
        if value is not None and prev is not None and value != prev:
            cls = "worse" if (value > prev) == up_is_bad else "better"
        prev_shown = "" if prev is None else f" (was {_pct(prev, 2 if label == 'Error rate' else 1) if rate else fmt(prev)})"
        delta = (f"vs {prev_label}: {delta_text(value, prev, rate=rate)}{prev_shown}" if label != "SLO misses"
                 else f"met: {fmt(h['slo_met'])}")
        out.append(f'<div class="card"><div class="label">{escape(label)}</div>'
                   f'<div class="value">{escape(shown)}</div><div class="delta {cls}">{escape(delta)}</div></div>')
    notes = ""
    if not d.prev_covered:
        notes = (f'<p class="note">The data does not cover the whole {escape(prev_label)} '
                 f"(first event {escape(_dt(d.first_event_at))}): no changes shown.</p>")
    return (f'<section id="headline"><h2>Headline</h2>{notes}<div class="cards">{"".join(out)}</div>'
            f'<p class="meta">Changes are against the {escape(prev_label)} '
            f"({escape(_dt(d.period.prev_start))} – {escape(_dt(d.period.prev_end))} UTC).</p></section>")


def _error_trends_html(d: ReportData, s: SectionData) -> str:
    p = d.period
    if s.status != OK:
        return _unavailable(s, ["error-trends", "error-rate"])
    data = s.data
    cats = [p.bucket_label(b) for b in data["buckets"]]
    bars = [Series(sev, data["by_severity"][sev], SEVERITY_COLORS.get(sev, PALETTE[i % len(PALETTE)]))
            for i, sev in enumerate(sorted(data["by_severity"], key=lambda k: list(SEVERITY_COLORS).index(k)
                                           if k in SEVERITY_COLORS else 99))]
    lines = [Series(f"{p.prev_label} (total)", data["prev_errors_per_bucket"], "#444", dashed=True)] \
        if any(v is not None for v in data["prev_errors_per_bucket"]) else []
    unit = "hour" if p.bucket == "hour" else "day"
    chart = svg.bar_chart("error-trends", f"Errors per {unit} by severity", cats, bars, lines=lines,
                          x_label=f"{unit} (UTC)", y_label="error events")
    rate = svg.line_chart("error-rate", f"Error rate per {unit}", cats,
                          [Series("error rate", data["rate_per_bucket"], "#d62728")]
                          + ([Series(p.prev_label, data["prev_rate_per_bucket"], "#444", dashed=True)]
                             if any(v is not None for v in data["prev_rate_per_bucket"]) else []),
                          x_label=f"{unit} (UTC)", y_label="errors / operations", y_format="{:.0%}")
    return (_figure(chart, f"Error events per {unit}, stacked by severity (marts.mart_error_trends_hourly); the "
                           f"dashed line is the {p.prev_label}, aligned {unit} by {unit}.")
            + _figure(rate, f"Errors per operation (job runs and posting attempts) per {unit}."))


def _templates_html(d: ReportData, s: SectionData) -> str:
    if s.status != OK:
        return _unavailable(s, ["top-templates"])
    top, risers = s.data["top"], s.data["risers"]
    chart = svg.hbar_chart("top-templates", "Top error templates", [t["template"] for t in top],
                           [Series("this period", [t["n_events"] for t in top], "#d62728")]
                           + ([Series(d.period.prev_label, [t["n_events_prev"] for t in top], "#999999")]
                              if d.prev_covered else []),
                           x_label="error events (hover a bar for the full template)")

    def row(t: dict) -> list[str]:
        flags = ", ".join(f for f, on in (("new", t["is_new"]), ("riser", t["is_riser"])) if on)
        return [f"<code>{escape(t['template'])}</code>", fmt(t["n_events"]), _pct(t.get("share")),
                fmt(t["n_events_prev"]), "n/a" if t["change"] is None else f"{t['change']:+d}", escape(flags)]
    headers = ["template", "events", "share", "prev", "change", ""]
    out = (_figure(chart, f"The {len(top)} most frequent error templates of the period "
                          f"({fmt(s.data['n_templates'])} templates, {fmt(s.data['n_templated_errors'])} templated "
                          f"error events; {fmt(s.data['n_new'])} new).")
           + "<h3>Top templates</h3>" + _table(headers, [row(t) for t in top], {1, 2, 3, 4}))
    out += "<h3>Risers</h3>"
    if risers:
        out += _table(headers, [row(t) for t in risers], {1, 2, 3, 4})
    else:
        out += '<p class="meta">No template rose by at least 5 events and ×1.5 against the previous period.</p>'
    return out


def _jobs_html(d: ReportData, s: SectionData) -> str:
    p = d.period
    if s.status != OK:
        return _unavailable(s, ["job-failures"])
    jobs = sorted({c["job_name"] for c in s.data["cells"]})
    buckets = p.buckets()
    col = {b: i for i, b in enumerate(buckets)}
    top = max([c["failures"] or 0 for c in s.data["cells"]] + [0])
    cells = {}
    for c in s.data["cells"]:
        f = c["failures"] or 0
        cells[(jobs.index(c["job_name"]), col[c["bucket"]])] = Cell(
            f, svg.heat_color(f, top),
            f"{c['job_name']} · {_dt(c['bucket'])}: {f} failures / {c['runs']} runs ({_pct(f / c['runs'])})",
            str(f) if f else "")
    unit = "hour" if p.bucket == "hour" else "day"
    chart = svg.heatmap("job-failures", "Job failures", jobs, [p.bucket_label(b) for b in buckets], cells,
                        x_label=f"{unit} (UTC)", y_label="job")
    rows = [[escape(j["job_name"]), fmt(j["runs"]), fmt(j["failures"]), _pct(j["failure_rate"]),
             fmt(j["longest_failure_streak"]), fmt(j["slow_runs"]), fmt(j["max_p95_minutes"]), fmt(j["stale_days"])]
            for j in s.data["jobs"]]
    table = _table(["job", "runs", "failures", "failure rate", "longest streak", "slow runs", "max p95 min",
                    "stale days"], rows, {1, 2, 3, 4, 5, 6, 7})
    return (_figure(chart, f"Failed runs per job and {unit} (intermediate.int_job_runs); a grey cell ran "
                           "without failures, an empty one did not run.") + table
            + '<p class="meta">Per-job figures from marts.mart_job_performance (daily rows of the period).</p>')


def _posting_html(d: ReportData, s: SectionData) -> str:
    p = d.period
    if s.status != OK:
        return _unavailable(s, ["posting-health"])
    pb, t, tp = s.data["per_bucket"], s.data["totals"], s.data["totals_prev"]
    cats = [p.bucket_label(b) for b in s.data["buckets"]]
    unit = "hour" if p.bucket == "hour" else "day"
    chart = svg.bar_chart("posting-health", f"Posting outcomes per {unit}", cats,
                          [Series("posted", [None if v is None else v - (n or 0)
                                             for v, n in zip(pb["n_posted"], pb["n_null_tweet_id"])], "#2ca02c"),
                           Series("posted, NULL tweet id", pb["n_null_tweet_id"], "#9467bd"),
                           Series("failed", pb["n_failed"], "#d62728"), Series("blocked", pb["n_blocked"], "#ff7f0e")],
                          x_label=f"{unit} (UTC)", y_label="decisions")
    keys = [("posted", "n_posted"), ("failed", "n_failed"), ("blocked", "n_blocked"), ("skipped", "n_skipped"),
            ("NULL tweet ids", "n_null_tweet_id"), ("attempts", "n_attempts"),
            ("attempts succeeded", "n_attempts_succeeded")]
    rows = [[escape(label), fmt(t[k]), fmt(tp[k]) if tp else "n/a", delta_text(t[k], tp[k] if tp else None)]
            for label, k in keys]
    rows.append(["success rate", _pct(t["success_rate"]), _pct(tp["success_rate"]) if tp else "n/a",
                 delta_text(t["success_rate"], tp["success_rate"] if tp else None, rate=True)])
    rows.append(["avg attempt minutes", fmt(t["avg_attempt_minutes"], 2),
                 fmt(tp["avg_attempt_minutes"], 2) if tp else "n/a", ""])
    return (_figure(chart, f"Decisions posted (with and without a tweet id) / failed / blocked per {unit} "
                           f"({s.data['relation']}).")
            + _table(["", "this period", p.prev_label, "change"], rows, {1, 2, 3}))


def _slo_html(d: ReportData, s: SectionData) -> str:
    if s.status != OK:
        return _unavailable(s, ["slo-scorecard"])
    weeks, metrics, rows = s.data["weeks"], s.data["metrics"], s.data["rows"]
    cells = {}
    for r in rows:
        tip = (f"{r['metric']} · week of {r['week_start']:%Y-%m-%d}: {r['status']} — actual "
               f"{fmt(r['actual_value'], 4)} {r['unit'] or ''} vs target {r['comparison']} {fmt(r['target_value'], 4)}"
               + (f"–{fmt(r['target_upper'], 4)}" if r["target_upper"] is not None else "")
               + (f" ({r['no_data_reason']})" if r["no_data_reason"] else ""))
        cells[(metrics.index(r["metric"]), weeks.index(r["week_start"]))] = Cell(
            r["actual_value"], STATUS_COLORS.get(r["status"], "#dddddd"), tip, r["status"])
    chart = svg.heatmap("slo-scorecard", "SLO scorecard", metrics, [f"week of {w:%Y-%m-%d}" for w in weeks], cells,
                        x_label="ISO week (Monday, UTC)", y_label="metric", row_label_width=230)
    latest = weeks[-1]
    table_rows = [[escape(r["metric"]), escape(r["checklist_target"] or ""),
                   escape(f"{r['comparison']} {fmt(r['target_value'], 4)}"
                          + (f"–{fmt(r['target_upper'], 4)}" if r["target_upper"] is not None else "")),
                   fmt(r["actual_value"], 4), escape(r["unit"] or ""),
                   f'<span class="{escape(r["status"]).replace(" ", "-")}">{escape(r["status"])}</span>',
                   escape(r["no_data_reason"] or "")]
                  for r in rows if r["week_start"] == latest]
    return (_figure(chart, "Status per metric and week (green met, red missed, grey no data); "
                           "marts.mart_slo_scorecard.")
            + f"<h3>Week of {latest:%Y-%m-%d}</h3>"
            + _table(["metric", "checklist target", "target", "actual", "unit", "status", "why no data"], table_rows,
                     {3}))


def _ticks(d: ReportData) -> list[tuple[float, str]]:
    p = d.period
    step = timedelta(hours=3) if p.kind == "daily" else timedelta(days=1 if p.kind == "weekly" else 3)
    out, at = [], p.start
    while at <= p.end:
        out.append((p.position(at), at.strftime("%H:%M") if p.kind == "daily" else at.strftime("%m-%d")))
        at += step
    return out


def _shutdowns_html(d: ReportData, s: SectionData) -> str:
    p = d.period
    if s.status != OK:
        return _unavailable(s, ["shutdowns"])
    eps = s.data["episodes"]
    reasons = sorted({e["dominant_block_reason"] or "unknown" for e in eps})
    spans = [Span(reasons.index(e["dominant_block_reason"] or "unknown"), p.position(e["shutdown_start_at"]),
                  p.position(e["end_or_as_of"]), "#d62728",
                  f"{e['dominant_block_reason'] or 'unknown'}: {_dt(e['shutdown_start_at'])} – "
                  f"{_dt(e['shutdown_end_at']) if e['shutdown_end_at'] else 'ongoing'} "
                  f"({fmt(e['duration_minutes'])} min)") for e in eps]
    chart = svg.timeline("shutdowns", "Shutdown episodes", reasons, _ticks(d), spans, x_label="time (UTC)")
    rows = [[escape(_dt(e["shutdown_start_at"])),
             escape(_dt(e["shutdown_end_at"]) if e["shutdown_end_at"] else "ongoing"),
             fmt(e["duration_minutes"]), fmt(e["minutes_in_period"]), escape(e["dominant_block_reason"] or ""),
             fmt(e["n_errors_before"]), escape(e["error_families_before"] or "")] for e in eps]
    return (_figure(chart, "Silent shutdowns (marts.mart_shutdown_episodes) by dominant blocking reason; "
                           "episodes overlapping the period, clipped to it.")
            + _table(["start", "end", "minutes", "minutes in period", "blocking reason", "errors in the hour before",
                      "error families before"], rows, {2, 3, 5}))


def _anomalies_html(d: ReportData, s: SectionData) -> str:
    p = d.period
    if s.status != OK:
        return _unavailable(s, ["anomalies"])
    rows_data = s.data["anomalies"]
    series = s.data["series"]
    spans = [Span(series.index(a["series"]), p.position(a["bucket"]), None,
                  SEVERITY_COLORS["critical"] if a["severity"] == "critical" else SEVERITY_COLORS["warning"],
                  f"{a['series']} @ {_dt(a['bucket'])}: observed {fmt(a['observed'])} vs expected "
                  f"{fmt(a['expected'])} ({a['severity']}, {a['direction']}; {a['rules'] or ''})")
             for a in rows_data]
    chart = svg.timeline("anomalies", "Anomalies", series, _ticks(d), spans, x_label="hour (UTC)",
                         row_label_width=260)
    rows = [[escape(_dt(a["bucket"])), escape(a["series"]), escape(a["series_kind"]), fmt(a["observed"]),
             fmt(a["expected"]),
             escape(f"{fmt(a['expected_low'])} – {fmt(a['expected_high'])}"), fmt(a["score"], 2),
             escape(a["severity"]), escape(a["direction"]), escape(a["rules"] or "")] for a in rows_data]
    return (_figure(chart, "Hourly anomalies (marts.mart_anomalies) of the period, one row per series; red = "
                           "critical, orange = warning.")
            + _table(["hour", "series", "kind", "observed", "expected", "expected range", "score", "severity",
                      "direction", "rules"], rows, {3, 4, 6}))


RENDERERS = {"error-trends": _error_trends_html, "templates": _templates_html, "jobs": _jobs_html,
             "posting": _posting_html, "slo": _slo_html, "shutdowns": _shutdowns_html, "anomalies": _anomalies_html}


def title_of(d: ReportData) -> str:
    return f"{d.period.kind.capitalize()} ops report — {d.period.label}"


def render_html(d: ReportData) -> str:
    p = d.period
    title = title_of(d)
    parts = []
    for sid in SECTION_ORDER[1:]:
        s = d.sections[sid]
        relations = ", ".join(s.relations)
        parts.append(f'<section id="{sid}" data-status="{s.status}"><h2>{escape(s.title)}</h2>{_note(s)}'
                     f"{RENDERERS[sid](d, s)}"
                     f'<p class="meta">Source: {escape(relations)}</p></section>')
    nav = "".join(f'<a href="#{sid}">{escape(d.sections[sid].title if sid in d.sections else "Headline")}</a>'
                  for sid in SECTION_ORDER)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p class=\"meta\">Period {escape(_dt(p.start))} – {escape(_dt(p.end))} "
            f"UTC (end exclusive) · data as of {escape(_dt(p.as_of))} UTC · compared with the "
            f"{escape(p.prev_label)}</p><nav>{nav}</nav></header>"
            f"{_headline_html(d)}{''.join(parts)}"
            f"<footer class=\"meta\"><p>ops-warehouse report, built from the warehouse's marts as of "
            f"{escape(_dt(p.as_of))} UTC.</p></footer></body></html>\n")


# ---------------------------------------------------------------------------------------------
# Markdown (Slack)


def _md_code(text: str, limit: int = 70) -> str:
    text = " ".join(text.split()).replace("`", "'")
    return "`" + (text if len(text) <= limit else text[: limit - 1] + "…") + "`"


def _md_change(value: Any, prev: Any, *, rate: bool = False) -> str:
    """``prev 416, +10.6%`` / ``+2.5 pp`` / ``no previous data``."""
    if value is None or prev is None:
        return "no previous data"
    if rate:
        return f"{(value - prev) * 100:+.1f} pp"
    if not prev:
        return f"prev {fmt(prev)}"
    return f"prev {fmt(prev)}, {(value - prev) / prev * 100:+.1f}%"


def render_markdown(d: ReportData, html_path: str) -> str:
    """A short summary (≤ 15 lines) for Slack."""
    h, s = d.headline, d.sections
    vs = d.period.prev_label
    lines = [f"*{title_of(d)}* ({_dt(d.period.start)} – {_dt(d.period.end)} UTC, vs {vs})"]
    lines.append(f"• Errors: {fmt(h['errors'])} ({_md_change(h['errors'], h['errors_prev'])}) · error rate "
                 f"{_pct(h['error_rate'], 2)} ({_md_change(h['error_rate'], h['error_rate_prev'], rate=True)})")
    lines.append(f"• Posts: {fmt(h['posts'])} ({_md_change(h['posts'], h['posts_prev'])}) · success rate "
                 f"{_pct(h['post_success_rate'])} "
                 f"({_md_change(h['post_success_rate'], h['post_success_rate_prev'], rate=True)}) · NULL tweet ids "
                 f"{fmt(h['null_tweet_ids'])}")
    jobs = s["jobs"]
    worst = ""
    if jobs.status == OK and jobs.data["jobs"] and jobs.data["jobs"][0]["failures"]:
        j = jobs.data["jobs"][0]
        worst = f" · worst job: {j['job_name']} ({fmt(j['failures'])} failures, {_pct(j['failure_rate'])})"
    lines.append(f"• Job failures: {fmt(h['job_failures'])} ({_md_change(h['job_failures'], h['job_failures_prev'])})"
                 + worst)
    sd = s["shutdowns"]
    shut = f"• Shutdowns: {fmt(h['shutdowns'])} ({fmt(h['shutdown_minutes'])} min)"
    if sd.status == OK:
        reasons = sorted({e["dominant_block_reason"] or "unknown" for e in sd.data["episodes"]})
        shut += " — " + ", ".join(reasons)
    lines.append(shut)
    lines.append(f"• Anomalies: {fmt(h['anomalies'])} ({fmt(h['anomalies_critical'])} critical)")
    slo = s["slo"]
    names = slo.data.get("missed_metrics", []) if slo.status == OK else []
    missed = ", ".join(names[:4]) + (f", +{len(names) - 4} more" if len(names) > 4 else "")
    lines.append(f"• SLO misses: {fmt(h['slo_missed'])}" + (f" ({missed})" if missed else "")
                 + f" · met: {fmt(h['slo_met'])}")
    t = s["templates"]
    if t.status == OK:
        lines.append("• Top templates: " + " · ".join(f"{_md_code(x['template'], 50)} ({fmt(x['n_events'])})"
                                                      for x in t.data["top"][:3]))
        if t.data["risers"]:
            lines.append("• Risers: " + " · ".join(f"{_md_code(x['template'], 50)} ({x['change']:+d})"
                                                   for x in t.data["risers"][:3]))
    for sid in ("error-trends", "templates", "jobs", "posting", "slo", "shutdowns", "anomalies"):
        if s[sid].status == MISSING:
            lines.append(f"• {s[sid].title}: {s[sid].note}")
            break
    lines.append(f"Report: {html_path}")
    return "\n".join(lines) + "\n"


__all__ = ["render_html", "render_markdown", "title_of", "SECTION_ORDER", "EMPTY"]
