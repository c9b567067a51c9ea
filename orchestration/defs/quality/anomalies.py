"""The anomaly mart as a Dagster asset, with its two asset checks (thin wiring of
orchestration.lib.anomaly.warehouse).

``mart_anomalies`` scores the hourly series of the dbt view ``int_anomaly_series_hourly`` and
replaces the last days of ``marts.mart_anomalies``; its checks judge the anomalies this run
found first (``is_new``):

- ``no_new_anomalies``           WARN when there is a new anomaly of severity warning;
- ``no_new_critical_anomalies``  ERROR when there is a new critical anomaly.

Both carry a Markdown table of the new anomalies (series, hour, observed vs expected, expected
range, rules, severity) and counts. Re-running with the same ``as_of`` gives the same rows and
the same check results; the next hourly run no longer calls them new.
"""

from datetime import datetime, timezone

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.anomaly.scoring import CRITICAL, WARNING
from orchestration.lib.anomaly.warehouse import (
    HISTORY_DAYS,
    WRITE_DAYS,
    AnomalyRow,
    AnomalyRunResult,
    markdown_table,
    refresh_anomalies,
)

OWNER = "team:ops-warehouse"
ASSET_KEY = dg.AssetKey(["mart_anomalies"])
SERIES_KEY = dg.AssetKey(["int_anomaly_series_hourly"])
NO_NEW_ANOMALIES = "no_new_anomalies"
NO_NEW_CRITICAL_ANOMALIES = "no_new_critical_anomalies"


class AnomaliesConfig(dg.Config):
    """``as_of`` (ISO timestamp, default now) ends the scored hours (complete hours only);
    ``write_days``: the days before it whose rows this run replaces."""

    as_of: str | None = None
    write_days: int = WRITE_DAYS


def _counts(rows: list[AnomalyRow]) -> dict[str, dg.MetadataValue]:
    return {
        "new_anomalies": dg.MetadataValue.int(len(rows)),
        "new_series": dg.MetadataValue.int(len({r.series for r in rows})),
    }


def _check(name: str, severity: dg.AssetCheckSeverity, offending: list[AnomalyRow], what: str,
           all_new: list[AnomalyRow]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=ASSET_KEY,
        check_name=name,
        passed=not offending,
        severity=severity,
        description=(f"{len(offending)} new {what} anomal{'y' if len(offending) == 1 else 'ies'}"
                     if offending else f"no new {what} anomaly"),
        metadata={
            **_counts(offending),
            "new_anomalies_any_severity": dg.MetadataValue.int(len(all_new)),
            "anomalies": dg.MetadataValue.md(markdown_table(offending)),
        },
    )


def no_new_anomalies(rows: list[AnomalyRow]) -> dg.AssetCheckResult:
    """Fails (WARN) when a new anomaly of severity warning is among ``rows``."""
    new = [r for r in rows if r.is_new]
    return _check(NO_NEW_ANOMALIES, dg.AssetCheckSeverity.WARN,
                  [r for r in new if r.severity == WARNING], WARNING, new)


def no_new_critical_anomalies(rows: list[AnomalyRow]) -> dg.AssetCheckResult:
    """Fails (ERROR) when a new critical anomaly is among ``rows``."""
    new = [r for r in rows if r.is_new]
    return _check(NO_NEW_CRITICAL_ANOMALIES, dg.AssetCheckSeverity.ERROR,
                  [r for r in new if r.severity == CRITICAL], CRITICAL, new)


def materialize_result(result: AnomalyRunResult) -> dg.MaterializeResult:
    """The asset's metadata and both check results for one run."""
    by_kind: dict[str, int] = {}
    for r in result.rows:
        by_kind[r.series_kind] = by_kind.get(r.series_kind, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "as_of": dg.MetadataValue.text(result.as_of.isoformat()),
            "scored_hours": dg.MetadataValue.text(f"{result.window_start:%Y-%m-%d %H:%M} .. "
                                                  f"{result.window_end:%Y-%m-%d %H:%M} UTC"),
            "written_from": dg.MetadataValue.text(f"{result.write_start:%Y-%m-%d %H:%M} UTC"),
            "series_scored": dg.MetadataValue.int(result.n_series),
            "anomalies": dg.MetadataValue.int(result.n_anomalies),
            "new_anomalies": dg.MetadataValue.int(len(result.new_anomalies)),
            "anomalies_by_kind": dg.MetadataValue.json(by_kind),
            "new_anomaly_list": dg.MetadataValue.md(markdown_table(result.new_anomalies)),
            **({"notes": dg.MetadataValue.text("; ".join(result.notes))} if result.notes else {}),
        },
        check_results=[no_new_anomalies(result.rows), no_new_critical_anomalies(result.rows)],
    )


@dg.asset(
    key=ASSET_KEY,
    deps=[SERIES_KEY],
    group_name="quality",
    owners=[OWNER],
    kinds={"python", "sql"},
    check_specs=[
        dg.AssetCheckSpec(NO_NEW_ANOMALIES, asset=ASSET_KEY,
                          description="WARN when this run found a new anomaly of severity warning."),
        dg.AssetCheckSpec(NO_NEW_CRITICAL_ANOMALIES, asset=ASSET_KEY,
                          description="ERROR when this run found a new critical anomaly."),
    ],
    description=(
        "Anomalies of the hourly series (errors per family, job failures and failure streaks per job, NULL "
        "tweet ids, circuit breaker events, posting queue blocks, posting volume drops) counted by the dbt view "
        "int_anomaly_series_hourly and scored in Python (baseline from earlier hours only, hour-of-day / weekday "
        "seasonality, Poisson or robust z, the checklist rules). One row per flagged series and hour: observed, "
        "expected, expected range, score, rules fired, severity, direction, detected_at, is_new. Each run "
        f"scores the last {HISTORY_DAYS} days of complete hours before as_of and replaces the rows of the last "
        "write_days days (older rows kept)."
    ),
)
def mart_anomalies(context: dg.AssetExecutionContext, config: AnomaliesConfig,
                   ops_locations: OpsLocations) -> dg.MaterializeResult:
    as_of = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(timezone.utc)
    result = refresh_anomalies(ops_locations.warehouse, as_of, write_days=config.write_days)
    context.log.info(f"scored {result.n_series} series over {result.window_start:%Y-%m-%d %H:%M} .. "
                     f"{result.window_end:%Y-%m-%d %H:%M} UTC: {result.n_anomalies} anomalies since "
                     f"{result.write_start:%Y-%m-%d %H:%M}, {len(result.new_anomalies)} new")
    for note in result.notes:
        context.log.warning(note)
    return materialize_result(result)


anomaly_assets = [mart_anomalies]
anomaly_check_keys = [dg.AssetCheckKey(ASSET_KEY, NO_NEW_ANOMALIES),
                      dg.AssetCheckKey(ASSET_KEY, NO_NEW_CRITICAL_ANOMALIES)]
