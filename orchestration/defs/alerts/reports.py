"""The daily / weekly / monthly reports as Dagster assets on schedules: thin wiring of
:func:`orchestration.lib.reports.build_report` and
:func:`orchestration.lib.alerts.report_notice.send_report`."""

from datetime import datetime, timezone
from typing import Optional

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.alerts.channels import channels_from_env
from orchestration.lib.alerts.report_notice import send_report
from orchestration.lib.alerts.tick import dagster_asset_url
from orchestration.lib.settings import DATA_DIR

GROUP = "alerts_and_reports"
REPORTS_DIR = DATA_DIR / "reports"
# the marts a report reads: the report runs after them and shows them upstream in the UI
REPORT_INPUTS = [dg.AssetKey(k) for k in (
    "mart_error_trends_hourly", "mart_error_templates", "mart_template_rank_7d_30d", "mart_job_performance",
    "mart_posting_health_hourly", "mart_posting_health_daily", "mart_slo_scorecard", "mart_shutdown_episodes",
    "mart_anomalies")]
PERIODS = {  # period -> (cron, what it covers)
    "daily": ("30 6 * * *", "the last full UTC day, compared with the day before"),
    "weekly": ("45 6 * * 1", "the last full ISO week (Monday to Sunday), compared with the week before"),
    "monthly": ("0 7 1 * *", "the last full calendar month, compared with the month before"),
}


class ReportConfig(dg.Config):
    """``as_of`` (ISO timestamp, default now): the report covers the last full period before it.
    ``send``: also send the Markdown summary through the alert channels (once per period)."""

    as_of: Optional[str] = None
    send: bool = True


def _report_asset(period: str) -> dg.AssetsDefinition:
    name = f"{period}_report"

    @dg.asset(name=name, group_name=GROUP, deps=REPORT_INPUTS, owners=["team:ops-warehouse"],
              kinds={"html", "markdown"},
              description=f"The {period} report: {PERIODS[period][1]}. An HTML file with charts (error trends, "
                          "top templates and risers, job failure heatmap, posting health, SLO scorecard, "
                          "shutdowns, anomalies) and a Markdown summary, under data/reports/" + period + "/.")
    def report_asset(context: dg.AssetExecutionContext, config: ReportConfig, ops_locations: OpsLocations):
        from orchestration.lib.reports import build_report

        as_of = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(timezone.utc)
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=timezone.utc)
        report = build_report(ops_locations.warehouse, period, as_of, REPORTS_DIR)
        metadata = {
            "path": dg.MetadataValue.path(str(report.html_path)),
            "markdown_path": dg.MetadataValue.path(str(report.markdown_path)),
            "period_start": dg.MetadataValue.timestamp(report.period_start),
            "period_end": dg.MetadataValue.timestamp(report.period_end),
            "preview": dg.MetadataValue.md(report.markdown),
            "sections": dg.MetadataValue.json(list(report.sections)),
            **{f"headline/{k}": v for k, v in report.headline.items() if isinstance(v, (int, float, str))},
        }
        if config.send:
            queued, delivery = send_report(ops_locations.warehouse, report, channels_from_env(),
                                           datetime.now(timezone.utc), dagster_asset_url(name))
            metadata["sent"] = dg.MetadataValue.json({"queued": queued, **delivery.as_dict()})
        context.log.info(f"{period} report {report.period_start:%Y-%m-%d}: {report.html_path}")
        return dg.MaterializeResult(metadata=metadata)

    return report_asset


report_assets = [_report_asset(period) for period in PERIODS]
report_jobs = {period: dg.define_asset_job(f"report_{period}", selection=[f"{period}_report"],
                                           description=f"Build and send the {period} report.")
               for period in PERIODS}


def _report_schedule(period: str) -> dg.ScheduleDefinition:
    cron, _ = PERIODS[period]

    @dg.schedule(name=f"{period}_report_schedule", job=report_jobs[period], cron_schedule=cron,
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
    def report_schedule(context: dg.ScheduleEvaluationContext):
        # the scheduled time pins the period: a late or retried tick builds the same report
        as_of = context.scheduled_execution_time.astimezone(timezone.utc).isoformat()
        return dg.RunRequest(run_key=f"{period}-{as_of}",
                             run_config={"ops": {f"{period}_report": {"config": {"as_of": as_of}}}})

    return report_schedule


report_schedules = [_report_schedule(period) for period in PERIODS]
