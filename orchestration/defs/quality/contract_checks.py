"""The event payload contract as a Dagster asset check on the dbt asset
``mart_event_contract_violations`` (group quality): warns when a writer logs events without the
context the checklist's 1.2 "enhanced error logging" requires (job name, decision_id, timestamp,
error type). The logic is plain Python in orchestration/lib/quality/contract.py."""


import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.quality.contract import (
    CONTRACT_MART,
    ContractResult,
    ContractThresholds,
    check_contract,
)

CONTRACT_ASSET_KEY = dg.AssetKey(["mart_event_contract_violations"])
CONTRACT_CHECK_NAME = "event_payload_contract"


def contract_check_result(result: ContractResult) -> dg.AssetCheckResult:
    """A WARN-severity check result with the writers without context as a Markdown table."""
    per_family = {family: {k: int(v) for k, v in counts.items()}
                  for family, counts in sorted(result.per_family.items())}
    return dg.AssetCheckResult(
        asset_key=CONTRACT_ASSET_KEY,
        check_name=CONTRACT_CHECK_NAME,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=result.summary,
        metadata={
            "writers_without_context": dg.MetadataValue.md(result.markdown_table()),
            "events_checked": dg.MetadataValue.int(result.n_events),
            "field_checks": dg.MetadataValue.int(result.n_field_checks),
            "missing_fields": dg.MetadataValue.int(result.n_violations),
            "violated_rows": dg.MetadataValue.int(len(result.violations)),
            "failing_rows": dg.MetadataValue.int(len(result.failing)),
            "per_family": dg.MetadataValue.json(per_family),
            "worst_writers": dg.MetadataValue.json(dict(result.worst_writers[: result.thresholds.top_n])),
            "window": f"({result.window_start}, {result.window_end}]",
            "thresholds": dg.MetadataValue.json({
                "max_violation_rate": result.thresholds.max_violation_rate,
                "max_violations": result.thresholds.max_violations,
                "min_events": result.thresholds.min_events,
                "warn_violation_rate": result.thresholds.warn_violation_rate,
            }),
            "where": f"select * from {CONTRACT_MART} where n_violations > 0 order by n_violations desc",
        },
    )


class ContractCheckConfig(dg.Config):
    """Thresholds of the contract check (defaults: any violation warns)."""

    max_violation_rate: float = 0.0
    max_violations: int = 0
    min_events: int = 1
    top_n: int = 20


@dg.asset_check(
    asset=CONTRACT_ASSET_KEY,
    name=CONTRACT_CHECK_NAME,
    description=("Warns when any writer logged events without the context the event payload contract "
                 "(seed event_contracts) requires — job name, decision_id, timestamp, error type — in "
                 "the mart's window; the metadata lists the writers, fields and an example event."),
    blocking=False,
)
def event_payload_contract_check(config: ContractCheckConfig, ops_locations: OpsLocations) -> dg.AssetCheckResult:
    thresholds = ContractThresholds(max_violation_rate=config.max_violation_rate,
                                    max_violations=config.max_violations, min_events=config.min_events,
                                    top_n=config.top_n)
    return contract_check_result(check_contract(ops_locations.warehouse, thresholds))


contract_asset_checks = [event_payload_contract_check]
