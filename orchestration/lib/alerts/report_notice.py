"""A generated report, sent through the alert channels (Slack gets the Markdown summary, email the
summary with the HTML report attached, the webhook and the file channel the JSON).

A report goes through the same outbox as alerts, keyed on a transition id derived from the
report's period: re-materializing the report of a period (a retried schedule, a re-run) sends
it once per channel.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from orchestration.lib.alerts import outbox
from orchestration.lib.alerts.channels import Channel
from orchestration.lib.alerts.notification import REPORT, Notification
from orchestration.lib.settings import Location


def report_notification(report: Any, asset_url: str | None = None) -> Notification:
    """The notification of a ``orchestration.lib.reports.Report``."""
    key = f"report|{report.period}|{report.period_start.isoformat()}"
    tid = "rep_" + hashlib.sha256(key.encode()).hexdigest()[:24]
    numbers = {k: v for k, v in report.headline.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return Notification(
        transition_id=tid, rule="report", subject=report.period, severity="info", status=REPORT,
        title=report.title, summary=report.markdown, since=report.period_start, at=report.period_end,
        numbers=numbers, labels={"report": report.period, "html_path": str(report.html_path),
                                 "markdown_path": str(report.markdown_path)},
        asset_url=asset_url, group_key=tid)


def send_report(location: Location, report: Any, channels: list[Channel], now: datetime,
                asset_url: str | None = None) -> tuple[int, outbox.DeliverySummary]:
    """Queue the report for every channel (once per period) and deliver what is due."""
    note = report_notification(report, asset_url)
    queued = outbox.enqueue(location, [note], channels, now)
    return queued, outbox.deliver(location, channels, now)


__all__ = ["report_notification", "send_report"]
