"""Great Expectations 1.x suites (``expectations/*.json``) run against the warehouse.

Plain functions, no Dagster: the asset checks in ``orchestration/defs/quality/gx_checks.py`` are
thin wrappers around :func:`run_suite`.

A suite file is GX's own serialisation of an ``ExpectationSuite`` (``name``, ``expectations``,
``meta``, ``notes``); our settings live in ``meta.ops_warehouse`` (GX keeps suite meta as is):

- ``relation``   the warehouse relation validated, ``schema.table``;
- ``select``     the SQL reading the rows to validate (a string or a list of lines), portable
                 across DuckDB and PostgreSQL; it may call the dbt macros of
                 ``dbt_project/macros/normalise.sql`` (``{{ normalise_severity('severity') }}``),
                 rendered with the same Jinja, so the suite validates exactly what staging makes;
- ``rows``       one line saying which rows the select reads (shown in the check's metadata);
- ``parameters`` optional times used by expectations as ``{"$PARAMETER": name}``, relative to
                 the validation time (``{"fresh_after": {"hours_from_now": -2}}``) or fixed
                 (``{"earliest": {"at": "2020-01-01T00:00:00Z"}}``); ``now`` is always there;
- ``asset_key``  optional; by default ``raw.<t>`` -> ``["raw", "<t>"]``, other schemas -> ``[<t>]``;
- ``severity``   ``WARN`` (default) or ``ERROR``: the Dagster check severity when it fails.

GX is imported lazily (a few seconds): loading the suite files for the Dagster definitions does
not need it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestration.lib import settings
from orchestration.lib.settings import Location

SUITES_DIR = settings.PROJECT_ROOT / "expectations"
DATA_DOCS_DIR = settings.DATA_DIR / "gx_data_docs"
# stored validation results (what Data Docs render), the newest KEEP_RESULTS per suite
RESULTS_DIR = settings.DATA_DIR / "gx_validation_results"
KEEP_RESULTS = 20
MACRO_FILES = (settings.DBT_PROJECT_DIR / "macros" / "normalise.sql",)
SAMPLE_ROWS = 5
SEVERITIES = ("WARN", "ERROR")

# no usage statistics, no progress bars (also set on the context below)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class SuiteSpec:
    """One suite file: GX's suite (as a dict) plus our settings from ``meta.ops_warehouse``."""

    name: str
    path: Path
    relation: str
    asset_key: tuple[str, ...]
    select_template: str
    rows: str
    # name -> hours from the validation time (float) or a fixed time
    parameters: dict[str, float | dt.datetime] = field(default_factory=dict)
    severity: str = "WARN"
    description: str = ""
    suite: dict = field(default_factory=dict, repr=False)  # GX's serialisation, as in the file

    @property
    def check_name(self) -> str:
        return f"gx_{self.name}"

    @property
    def expectation_types(self) -> list[str]:
        return [e.get("type", "?") for e in self.suite.get("expectations", [])]

    def select_sql(self) -> str:
        """The selection SQL with the dbt macros rendered."""
        return render_sql(self.select_template, self.path)

    def parameter_values(self, now: dt.datetime) -> dict[str, dt.datetime]:
        values = {"now": now}
        values.update({name: v if isinstance(v, dt.datetime) else now + dt.timedelta(hours=v)
                       for name, v in self.parameters.items()})
        return values


@dataclass
class FailedExpectation:
    type: str
    column: str | None
    kwargs: dict
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    sample_values: list = field(default_factory=list)
    sample_rows: list[dict] = field(default_factory=list)
    exception: str | None = None

    def describe(self) -> str:
        bits = [self.type + (f"({self.column})" if self.column else "")]
        if self.unexpected_count is not None:
            bits.append(f"{self.unexpected_count} unexpected ({self.unexpected_percent or 0:.3g}%)")
        if self.observed_value is not None:
            bits.append(f"observed {self.observed_value}")
        if self.exception:
            bits.append(f"error: {self.exception}")
        return ", ".join(bits)


@dataclass
class SuiteResult:
    suite: str
    relation: str
    asset_key: tuple[str, ...]
    rows_selected: str
    select_sql: str
    now: dt.datetime
    rows_validated: int = 0
    n_expectations: int = 0
    n_passed: int = 0
    failures: list[FailedExpectation] = field(default_factory=list)
    error: str | None = None  # reading the rows failed
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def failed_types(self) -> list[str]:
        return [f.type for f in self.failures]

    def failure(self, type_: str, column: str | None = None) -> FailedExpectation | None:
        for f in self.failures:
            if f.type == type_ and (column is None or f.column == column):
                return f
        return None

    def summary(self) -> str:
        if self.error:
            return f"{self.suite}: error: {self.error}"
        state = "passed" if self.passed else "FAILED"
        text = (f"{self.suite} on {self.relation}: {state}, {self.n_passed}/{self.n_expectations} "
                f"expectations, {self.rows_validated} rows, {self.seconds:.2f}s")
        return text + "".join(f"\n  - {f.describe()}" for f in self.failures)


# ---------------------------------------------------------------------------------------------
# suite files


def load_suites(directory: Path = SUITES_DIR) -> list[SuiteSpec]:
    """Every ``*.json`` in the folder, sorted by file name; suite names must be unique."""
    specs = [load_suite(p) for p in sorted(Path(directory).glob("*.json"))]
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            raise SuiteError(f"{spec.path}: suite name {spec.name!r} already used by {seen[spec.name]}")
        seen[spec.name] = spec.path
    return specs


def load_suite(path: Path) -> SuiteSpec:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: not a readable JSON suite file: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: expected a JSON object (a GX ExpectationSuite)")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{path}: the suite has no 'name'")
    expectations = data.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
    for i, exp in enumerate(expectations):
        if not isinstance(exp, dict) or not isinstance(exp.get("type"), str) or not isinstance(
                exp.get("kwargs", {}), dict):
            raise SuiteError(f"{path}: expectation #{i} needs a 'type' (string) and 'kwargs' (object)")
    ours = (data.get("meta") or {}).get("ops_warehouse")
    if not isinstance(ours, dict):
        raise SuiteError(f"{path}: missing meta.ops_warehouse (relation, select, rows)")
    relation = ours.get("relation")
    if not isinstance(relation, str) or relation.count(".") != 1:
        raise SuiteError(f"{path}: meta.ops_warehouse.relation must be 'schema.table', not {relation!r}")
    select = ours.get("select")
    if isinstance(select, list) and all(isinstance(s, str) for s in select):
        select = "\n".join(select)
    if not isinstance(select, str) or not select.strip():
        raise SuiteError(f"{path}: meta.ops_warehouse.select must be SQL (a string or a list of lines)")
    schema, table = relation.split(".")
    asset_key = ours.get("asset_key") or ([schema, table] if schema == "raw" else [table])
    severity = str(ours.get("severity", "WARN")).upper()
    if severity not in SEVERITIES:
        raise SuiteError(f"{path}: meta.ops_warehouse.severity must be one of {SEVERITIES}")
    parameters: dict[str, float | dt.datetime] = {}
    for pname, pvalue in (ours.get("parameters") or {}).items():
        parameters[pname] = _parameter(path, pname, pvalue)
    spec = SuiteSpec(
        name=name, path=path, relation=relation, asset_key=tuple(asset_key),
        select_template=select, rows=str(ours.get("rows", "")), parameters=parameters,
        severity=severity, description=str(ours.get("description") or data.get("notes") or ""),
        suite=data,
    )
    spec.select_sql()  # Jinja errors now, naming the file
    return spec


def _parameter(path: Path, name: str, value: Any) -> float | dt.datetime:
    """``{"hours_from_now": -2}`` or ``{"at": "2020-01-01T00:00:00Z"}``."""
    if isinstance(value, dict) and isinstance(value.get("hours_from_now"), (int, float)):
        return float(value["hours_from_now"])
    if isinstance(value, dict) and isinstance(value.get("at"), str):
        try:
            at = dt.datetime.fromisoformat(value["at"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise SuiteError(f"{path}: parameter {name!r}: {exc}") from exc
        return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    raise SuiteError(f'{path}: parameter {name!r} must be {{"hours_from_now": <number>}} or {{"at": "<ISO time>"}}')


@lru_cache(maxsize=1)
def _macro_source() -> str:
    return "".join(p.read_text() + "\n" for p in MACRO_FILES)


def render_sql(template: str, path: Path | None = None) -> str:
    import jinja2

    try:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        return env.from_string(_macro_source() + template).render().strip()
    except jinja2.TemplateError as exc:
        raise SuiteError(f"{path}: cannot render the select: {exc}") from exc


def build_gx_suite(spec: SuiteSpec):
    """GX's ExpectationSuite from the file; an unknown expectation or bad kwargs name the file.
    (Built one expectation at a time: GX's suite constructor only logs an invalid one and drops
    it.)"""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for i, exp in enumerate(spec.suite["expectations"]):
        try:
            config = ExpectationConfiguration(**{k: v for k, v in exp.items() if k != "id"})
            expectations.append(config.to_domain_obj())
        except Exception as exc:  # not found, invalid configuration, pydantic validation
            raise SuiteError(f"{spec.path}: expectation #{i} ({exp.get('type')}) of suite {spec.name!r} "
                             f"is invalid: {exc}") from exc
    body = {k: spec.suite[k] for k in ("meta", "notes") if k in spec.suite}
    suite = gx.ExpectationSuite(name=spec.name, expectations=expectations, **body)
    if len(suite.expectations) != len(expectations):  # pragma: no cover - GX dropped one
        raise SuiteError(f"{spec.path}: GX kept {len(suite.expectations)} of {len(expectations)} expectations")
    return suite


# ---------------------------------------------------------------------------------------------
# reading the rows


def read_rows(location: Location, spec: SuiteSpec):
    """The rows the suite's select returns, as a pandas DataFrame (timestamps tz-aware UTC)."""
    import pandas as pd

    sql = spec.select_sql()
    if location.is_postgres:
        from orchestration.lib.db import read_query

        columns, rows = read_query(location, sql)
        frame = pd.DataFrame(rows, columns=columns)
        for col in frame.columns:  # numeric -> Decimal: make it float
            if frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, Decimal)).any():
                frame[col] = frame[col].map(lambda v: float(v) if isinstance(v, Decimal) else v).astype("float64")
        for col in frame.columns:
            if frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, dt.datetime)).any():
                frame[col] = pd.to_datetime(frame[col], utc=True)
        return frame
    import duckdb

    from orchestration.lib.db import duckdb_connect

    try:
        conn = duckdb_connect(location, read_only=True)
    except duckdb.ConnectionException:  # this process already holds the file read-write
        conn = duckdb_connect(location)
    try:
        return conn.execute(sql).df()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# validating


class GxRunner:
    """One GX Core context (ephemeral, in-memory suites; validation results on disk so Data Docs
    list the recent runs of every suite). Reuse one for several suites."""

    def __init__(self, docs_dir: Path | None = DATA_DOCS_DIR, results_dir: Path | None = RESULTS_DIR):
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.docs_dir = Path(docs_dir) if docs_dir else None
        self.results_dir = Path(results_dir) if results_dir else None
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            data_docs_sites={} if not self.docs_dir else {"local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(self.docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }},
        )
        if self.results_dir:
            self.results_dir.mkdir(parents=True, exist_ok=True)
            config.stores["validation_results_store"] = {
                "class_name": "ValidationResultsStore",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(self.results_dir)},
            }
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.context.enable_analytics(False)
        self._datasource = self.context.data_sources.add_pandas("warehouse")
        self._definitions: dict[str, Any] = {}
        self._validated: list[tuple[str, Any]] = []  # (suite name, GX run id) since the last docs build

    def _definition(self, spec: SuiteSpec):
        import great_expectations as gx

        if spec.name not in self._definitions:
            suite = self.context.suites.add(build_gx_suite(spec))
            asset = self._datasource.add_dataframe_asset(name=spec.name)
            batch = asset.add_batch_definition_whole_dataframe("latest_rows")
            self._definitions[spec.name] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=spec.name, data=batch, suite=suite))
        return self._definitions[spec.name]

    def validate(self, spec: SuiteSpec, frame, now: dt.datetime | None = None,
                 result: SuiteResult | None = None) -> SuiteResult:
        """Validate a DataFrame against the suite; fills and returns a SuiteResult."""
        started = time.perf_counter()
        now = now or dt.datetime.now(dt.timezone.utc)
        result = result or _new_result(spec, now)
        definition = self._definition(spec)
        frame = frame.reset_index(drop=True)
        gx_result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=spec.parameter_values(now),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
        self._validated.append((spec.name, gx_result.meta.get("run_id")))
        result.rows_validated = len(frame)
        result.n_expectations = len(gx_result.results)
        for r in gx_result.results:
            if r.success:
                result.n_passed += 1
            else:
                result.failures.append(_failure(r, frame))
        result.seconds += time.perf_counter() - started
        return result

    def build_data_docs(self) -> Path | None:
        """Data Docs of the stored validation results; the index.html path. Only the pages of
        the suites validated by this runner are (re)rendered, plus the index: the cost does not
        grow with the stored history."""
        if not self.docs_dir:
            return None
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        if self.results_dir:
            prune_results(self.results_dir)
        if (self.docs_dir / "validations").is_dir():  # the pages of pruned results too
            prune_results(self.docs_dir / "validations")
        # stored keys are (suite, run name, run time as 20261202T100647.872292Z, batch)
        wanted = {(name, run_id.run_time.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"))
                  for name, run_id in self._validated if run_id is not None}
        resources: list = [k for k in self.context.validation_results_store.list_keys()
                           if (k.to_tuple()[0], k.to_tuple()[2]) in wanted]
        resources += [ExpectationSuiteIdentifier(name) for name in {n for n, _ in self._validated}]
        self.context.build_data_docs(resource_identifiers=resources or None)
        self._validated.clear()
        return self.docs_dir / "index.html"


def _new_result(spec: SuiteSpec, now: dt.datetime) -> SuiteResult:
    return SuiteResult(suite=spec.name, relation=spec.relation, asset_key=spec.asset_key,
                       rows_selected=spec.rows, select_sql=spec.select_sql(), now=now)


def _failure(r, frame) -> FailedExpectation:
    config = r.expectation_config
    kwargs = {k: _plain(v) for k, v in dict(config.kwargs).items() if k not in ("batch_id",)}
    info = r.result or {}
    exc = r.exception_info or {}
    if "raised_exception" not in exc:  # several exceptions keyed by metric
        exc = next(iter(exc.values()), {}) if exc else {}
    failure = FailedExpectation(
        type=config.type,
        column=kwargs.get("column") or (", ".join(kwargs["column_list"]) if kwargs.get("column_list") else None),
        kwargs=kwargs,
        unexpected_count=info.get("unexpected_count"),
        unexpected_percent=_plain(info.get("unexpected_percent")),
        observed_value=_plain(info.get("observed_value")),
        sample_values=[_plain(v) for v in (info.get("partial_unexpected_list") or [])[:SAMPLE_ROWS]],
        exception=exc.get("exception_message") if exc.get("raised_exception") else None,
    )
    index = [i for i in (info.get("partial_unexpected_index_list") or []) if isinstance(i, int)]
    if index:
        rows = frame.iloc[[i for i in index if 0 <= i < len(frame)][:SAMPLE_ROWS]]
        failure.sample_rows = [{k: _plain(v) for k, v in row.items()} for row in rows.to_dict("records")]
    return failure


def _plain(value: Any) -> Any:
    """A JSON-friendly value (timestamps as ISO text, NaN/NaT as None)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        try:
            import pandas as pd

            if value is pd.NaT:
                return None
        except ImportError:  # pragma: no cover
            pass
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def prune_results(results_dir: Path, keep: int = KEEP_RESULTS) -> None:
    """Keep the newest ``keep`` stored runs of each suite (layout: suite/run_name/run_time/...,
    the same for the results store and the Data Docs validation pages)."""
    for suite_dir in (p for p in results_dir.iterdir() if p.is_dir()):
        runs = sorted((run_time for run_name in suite_dir.iterdir() if run_name.is_dir()
                       for run_time in run_name.iterdir() if run_time.is_dir()),
                      key=lambda p: p.name, reverse=True)
        for old in runs[keep:]:
            shutil.rmtree(old, ignore_errors=True)
            if not any(old.parent.iterdir()):
                old.parent.rmdir()


def validate_frame(spec: SuiteSpec, frame, now: dt.datetime | None = None,
                   runner: GxRunner | None = None) -> SuiteResult:
    """Validate a DataFrame (the rows a select would return) against a suite."""
    runner = runner or GxRunner(docs_dir=None, results_dir=None)
    return runner.validate(spec, frame, now)


def run_suite(location: Location, spec: SuiteSpec, now: dt.datetime | None = None,
              runner: GxRunner | None = None) -> SuiteResult:
    """Read the suite's rows from the warehouse and validate them. A failing read (missing
    relation, SQL error) comes back as a failed result with ``error`` set; a bad suite raises
    SuiteError."""
    now = now or dt.datetime.now(dt.timezone.utc)
    result = _new_result(spec, now)
    runner = runner or GxRunner(docs_dir=None, results_dir=None)
    started = time.perf_counter()
    try:
        frame = read_rows(location, spec)
    except Exception as exc:  # noqa: BLE001 - reported in the result, the check fails
        result.error = f"{type(exc).__name__}: {exc}".strip()[:2000]
        result.seconds = time.perf_counter() - started
        return result
    result.seconds = time.perf_counter() - started
    return runner.validate(spec, frame, now, result=result)
