"""Great Expectations suites (``expectations/*.json``) as Dagster asset checks.

One asset check per suite file, named ``gx_<suite name>``, on the asset that writes the suite's
relation (``raw.<t>`` -> ``raw/<t>``, dbt models -> ``<model>``). GX Core is called directly
(orchestration/lib/quality/gx_suites.py; dagster-ge does not support GX 1.x). A failing check
is a warning unless the suite says ``"severity": "ERROR"``; its metadata lists the failing
expectations (with the error of any that could not be evaluated, and the values read as NULL
because pandas cannot hold them, such as timestamptz ``infinity``), sample rows, the relation and
row selection, and the Data Docs index.

Wire with ``gx_asset_checks`` (a list of AssetChecksDefinition) in ``Definitions(asset_checks=…)``.
"""
# (no `from __future__ import annotations`: Dagster reads the resource annotations at runtime)

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg

from orchestration.defs.resources import OpsLocations
from orchestration.lib.quality import gx_suites
from orchestration.lib.quality.gx_suites import FailedExpectation, SuiteResult, SuiteSpec

Clock = Callable[[], dt.datetime]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cell(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."


def _unrepresentable_markdown(result: SuiteResult) -> str:
    if not result.unrepresentable:
        return ""
    return "\n\n**Read as NULL (not representable):** " + "; ".join(
        _cell(reason) for reason in result.unrepresentable.values())


def _observed(f: FailedExpectation) -> str:
    """The observed cell: the error if the expectation could not be evaluated, else the reason
    it fails besides GX's verdict (odd values) and GX's observed value."""
    if f.exception:
        return f"error: {_cell(f.exception)}"
    observed = _cell(f.observed_value) if f.observed_value is not None else ""
    if f.reason:
        return f"**{_cell(f.reason)}**" + (f"; {observed}" if observed else "")
    return observed


def failures_markdown(result: SuiteResult) -> str:
    if result.error:
        return f"**The rows could not be read:** `{_cell(result.error)}`"
    if not result.failures:
        return f"All {result.n_expectations} expectations passed." + _unrepresentable_markdown(result)
    lines = ["| expectation | column | unexpected | observed | bounds / set | sample values |",
             "|---|---|---|---|---|---|"]
    for f in result.failures:
        bounds = {k: v for k, v in f.kwargs.items() if k not in ("column", "column_list")}
        unexpected = (f"{f.unexpected_count} ({f.unexpected_percent or 0:.3g}%)"
                      if f.unexpected_count is not None else "")
        lines.append(f"| `{f.type}` | {f.column or ''} | {unexpected} | {_observed(f)} | {_cell(bounds)} | "
                     f"{_cell(f.sample_values) if f.sample_values else ''} |")
    return "\n".join(lines) + _unrepresentable_markdown(result)


def check_metadata(spec: SuiteSpec, result: SuiteResult, docs_index: Path | None) -> dict:
    samples = {f"{f.type}({f.column or ''})": f.sample_rows for f in result.failures if f.sample_rows}
    meta: dict = {
        "relation": result.relation,
        "rows_selected": result.rows_selected,
        "rows_validated": dg.MetadataValue.int(result.rows_validated),
        "expectations": dg.MetadataValue.int(result.n_expectations),
        "expectations_passed": dg.MetadataValue.int(result.n_passed),
        "expectations_failed": dg.MetadataValue.int(result.n_failed),
        "failing_expectations": dg.MetadataValue.md(failures_markdown(result)),
        "sample_failing_rows": dg.MetadataValue.json(samples),
        "select_sql": dg.MetadataValue.md(f"```sql\n{result.select_sql}\n```"),
        "suite_file": dg.MetadataValue.path(str(spec.path)),
        "validated_at": result.now.isoformat(timespec="seconds"),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
    }
    if docs_index is not None:
        meta["data_docs"] = dg.MetadataValue.path(str(docs_index))
    if result.error:
        meta["error"] = dg.MetadataValue.text(result.error)
    errors = {f"{f.type}({f.column or ''})": f.exception for f in result.failures if f.exception}
    if errors:  # expectations that could not be evaluated, with GX's or Python's error
        meta["expectation_errors"] = dg.MetadataValue.json(errors)
    if result.unrepresentable:  # column -> values read as NULL, e.g. timestamptz infinity
        meta["unrepresentable_values"] = dg.MetadataValue.json(result.unrepresentable)
    return meta


def _description(spec: SuiteSpec) -> str:
    kinds = sorted(set(spec.expectation_types))
    return (f"Great Expectations suite `{spec.name}` ({spec.path.name}) on `{spec.relation}`: "
            f"{len(spec.expectation_types)} expectations ({', '.join(kinds)}). Rows: {spec.rows}. "
            f"{spec.description}").strip()


def build_gx_asset_check(spec: SuiteSpec, clock: Clock = _utc_now, docs_dir: Path | None = None,
                         results_dir: Path | None = None) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dg.AssetKey(list(spec.asset_key)), name=spec.check_name,
                    description=_description(spec), blocking=False)
    def _gx_check(context: dg.AssetCheckExecutionContext, ops_locations: OpsLocations) -> dg.AssetCheckResult:
        runner = gx_suites.GxRunner(docs_dir=docs_dir or gx_suites.DATA_DOCS_DIR,
                                    results_dir=results_dir or gx_suites.RESULTS_DIR)
        result = gx_suites.run_suite(ops_locations.warehouse, spec, now=clock(), runner=runner)
        docs_index = None
        try:
            docs_index = runner.build_data_docs()
        except Exception as exc:  # noqa: BLE001 - the docs are a convenience; the check stands
            context.log.warning(f"GX Data Docs not built: {exc}")
        context.log.info(result.summary())
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity[spec.severity],
            metadata=check_metadata(spec, result, docs_index),
        )

    return _gx_check


def build_gx_asset_checks(specs: Sequence[SuiteSpec] | None = None, clock: Clock = _utc_now,
                          docs_dir: Path | None = None,
                          results_dir: Path | None = None) -> list[dg.AssetChecksDefinition]:
    specs = gx_suites.load_suites() if specs is None else specs
    return [build_gx_asset_check(s, clock, docs_dir, results_dir) for s in specs]


# every suite file in expectations/, loaded when the code location loads (a broken file fails
# the load with an error naming it)
gx_asset_checks = build_gx_asset_checks()
