"""Error templates: the recurring patterns of error messages, mined after the facts are built."""

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.templates.warehouse import refresh_templates

OWNER = "team:ops-warehouse"


class TemplatesConfig(dg.Config):
    """``as_of`` (ISO timestamp) ends the 7- and 30-day count windows; default now."""

    as_of: str | None = None


@dg.asset(
    key=["mart_error_templates"],
    deps=[dg.AssetKey(["fct_system_events"])],
    group_name="error_analytics",
    owners=[OWNER],
    kinds={"python", "sql"},
    description=(
        "Error messages turned into templates (variable parts masked: uuids, tweet ids, numbers, hex, urls, "
        "emails, durations, quoted values, timestamps; then clustered with a Drain-style miner). One row per "
        "live template: text, first/last seen, counts all time / 7 days / 30 days, the event types and jobs "
        "it appears in, an example, and is_new. Ids are stable across runs (sha1 of the template text, old ids "
        "kept in marts.error_template_aliases); marts.error_event_templates maps each error event to its "
        "template. Each error event is mined exactly once (miner state saved with the assignments)."
    ),
)
def mart_error_templates(context: dg.AssetExecutionContext, config: TemplatesConfig,
                         ops_locations: OpsLocations) -> dg.MaterializeResult:
    from datetime import datetime, timezone

    as_of = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(timezone.utc)
    result = refresh_templates(ops_locations.warehouse, as_of)
    context.log.info(f"mined {result.events_mined} error events; {result.templates_total} templates, "
                     f"{len(result.new_templates)} new")
    new_table = "\n".join(f"| `{tid}` | {text[:120]} |" for tid, text in result.new_templates[:20])
    return dg.MaterializeResult(metadata={
        "events_mined": dg.MetadataValue.int(result.events_mined),
        "templates_total": dg.MetadataValue.int(result.templates_total),
        "new_templates": dg.MetadataValue.int(len(result.new_templates)),
        "new_template_list": dg.MetadataValue.md("| id | template |\n|---|---|\n" + new_table if new_table else "none"),
    })
