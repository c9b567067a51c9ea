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
import logging
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

log = logging.getLogger(__name__)


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
    exception: str | None = None  # the expectation could not be evaluated: GX's or Python's error
    reason: str | None = None  # why it fails besides GX's verdict (values the frame cannot hold)

    def describe(self) -> str:
        bits = [self.type + (f"({self.column})" if self.column else "")]
        if self.reason:
            bits.append(self.reason)
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
    # column -> reason, for the values read as NULL because the DataFrame cannot hold them
    unrepresentable: dict[str, str] = field(default_factory=dict)

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
        text += "".join(f"\n  ! {reason}" for reason in self.unrepresentable.values())
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
            at = dt.datetime.fromisoformat(value["at"])  # Python 3.11 reads a trailing Z
        except ValueError as exc:
            raise SuiteError(f"{path}: parameter {name!r}: {exc}") from exc
        return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
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

# Python's datetime holds years 1..9999 (psycopg raises beyond, GX and the JSON of results go
# through it); pandas' datetime64[us] holds more, but DuckDB's infinity arrives as year 294247.
REPRESENTABLE_YEARS = (1, 9999)
# PostgreSQL type OIDs read through the guard, and what a reason calls their values
PG_GUARDED_TYPES = {1082: "dates", 1114: "timestamps", 1184: "timestamps", 1186: "intervals"}
_INT64_MAX = 2**63 - 1  # DuckDB's infinity as an int64 timestamp (-infinity: minus this)


@dataclass
class OddValues:
    """The values of one column that the DataFrame cannot hold: they are read as NULL (NaT) and
    kept here as the database prints them (``infinity``), by row position in the frame."""

    column: str
    kind: str  # "timestamps", "dates", "intervals"
    texts: dict[int, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.texts)

    def reason(self) -> str:
        distinct = list(dict.fromkeys(self.texts.values()))
        shown = ", ".join(distinct[:5]) + (", ..." if len(distinct) > 5 else "")
        rows = "1 row holds" if self.count == 1 else f"{self.count} rows hold"
        return f"{self.column}: {rows} {self.kind} pandas cannot represent ({shown})"


@dataclass
class Rows:
    """The rows read for a suite: the DataFrame, and by column the values it could not hold."""

    frame: Any
    odd_values: dict[str, OddValues] = field(default_factory=dict)


def read_rows(location: Location, spec: SuiteSpec):
    """The rows the suite's select returns, as a pandas DataFrame (timestamps tz-aware UTC; values
    it cannot hold are NULL: see :func:`read_suite_rows`)."""
    return read_suite_rows(location, spec).frame


def read_suite_rows(location: Location, spec: SuiteSpec) -> Rows:
    """The rows the suite's select returns. Dates and timestamps pandas cannot hold (``infinity``,
    ``-infinity``, years outside 1..9999) never stop the read: they come back as NULL in the frame
    and as text in ``odd_values``, so that the expectations on their column can fail naming them."""
    sql = spec.select_sql().rstrip().rstrip(";")
    return _read_postgres(location, sql) if location.is_postgres else _read_duckdb(location, sql)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fits(col: str, kind: str) -> str:
    """SQL true when the value fits the frame. A range comparison, not extract(year): as cheap as
    it gets on 200,000 rows, and infinities compare beyond any bound. The session time zone is UTC
    on both engines, so the bounds are UTC."""
    if kind == "intervals":
        return f"isfinite({col})"
    lo, hi = REPRESENTABLE_YEARS
    if kind == "dates":
        return f"{col} between date '{lo:04d}-01-01' and date '{hi:04d}-12-31'"
    return f"{col} between timestamp '{lo:04d}-01-01 00:00:00' and timestamp '{hi:04d}-12-31 23:59:59.999999'"


def _guarded_select(sql: str, kinds: list[tuple[str, str | None]]) -> tuple[str, dict[str, tuple[str, str]]]:
    """The select wrapped so that each date/time value the frame cannot hold reads as NULL, and
    its text goes to an extra marker column (marker -> (column, kind)). The same SQL runs on
    DuckDB and PostgreSQL."""
    exprs: list[str] = []
    markers: dict[str, tuple[str, str]] = {}
    for i, (name, kind) in enumerate(kinds):
        col = _quote(name)
        if kind is None:
            exprs.append(col)
            continue
        fits = _fits(col, kind)
        marker = f"__odd_value_{i}"
        markers[marker] = (name, kind)
        exprs += [f"case when {fits} then {col} end as {col}",
                  f"case when not {fits} then cast({col} as varchar) end as {marker}"]
    return f"select {', '.join(exprs)}\nfrom (\n{sql}\n) as rows_to_validate", markers


def _split_markers(frame, markers: dict[str, tuple[str, str]]) -> Rows:
    odd: dict[str, OddValues] = {}
    for marker, (column, kind) in markers.items():
        found = frame[marker][frame[marker].notna()]
        if len(found):
            odd[column] = OddValues(column, kind, {int(i): str(v) for i, v in found.items()})
    return Rows(frame.drop(columns=list(markers)), odd)


def _duckdb_kind(type_name: str) -> str | None:
    type_name = type_name.upper()
    if type_name == "DATE":
        return "dates"
    # TIMESTAMP_NS spans 1677-2262 only: always in the frame's range (and no infinity)
    return "timestamps" if type_name.startswith("TIMESTAMP") and type_name != "TIMESTAMP_NS" else None


def _read_duckdb(location: Location, sql: str) -> Rows:
    import duckdb

    from orchestration.lib.db import duckdb_connect

    try:
        conn = duckdb_connect(location, read_only=True)
    except duckdb.ConnectionException:  # this process already holds the file read-write
        conn = duckdb_connect(location)
    try:
        rel = conn.sql(sql)  # planned, not run: the column types decide the guard
        if rel is None:
            raise ValueError("the select is not a query")
        kinds = [(name, _duckdb_kind(str(t))) for name, t in zip(rel.columns, rel.types, strict=True)]
        markers: dict[str, tuple[str, str]] = {}
        if any(kind for _, kind in kinds):
            guarded, markers = _guarded_select(sql, kinds)
            rel = conn.sql(guarded)
        return _split_markers(rel.df(), markers)
    finally:
        conn.close()


def _read_postgres(location: Location, sql: str) -> Rows:
    import pandas as pd

    from orchestration.lib.db import postgres_connect

    conn = postgres_connect(location, autocommit=True)
    try:  # the column types first (limit 0: planned, no rows), then the guarded select
        probe = conn.execute(f"select * from (\n{sql}\n) as rows_to_validate limit 0")
        kinds = [(d.name, PG_GUARDED_TYPES.get(d.type_code)) for d in probe.description or []]
        guarded, markers = _guarded_select(sql, kinds) if any(k for _, k in kinds) else (sql, {})
        cur = conn.execute(guarded)
        rows = _split_markers(pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description]), markers)
    finally:
        conn.close()
    rows.frame = _pandas_types(rows.frame)
    return rows


def _pandas_types(frame):
    """psycopg's Python values as the columns DuckDB gives: numeric (Decimal) -> float, datetimes
    -> datetime64 UTC (left as Python datetimes if pandas cannot convert them)."""
    import pandas as pd

    for col in frame.columns:
        values = frame[col]
        if values.dtype != object:
            continue
        if values.map(lambda v: isinstance(v, Decimal)).any():
            frame[col] = values.map(lambda v: float(v) if isinstance(v, Decimal) else v).astype("float64")
        elif values.map(lambda v: isinstance(v, dt.datetime)).any():
            try:
                frame[col] = pd.to_datetime(values, utc=True)
            except (ValueError, TypeError, OverflowError):  # incl. OutOfBoundsDatetime on older pandas
                pass
    return frame


def _scrub_timestamps(frame) -> tuple[Any, dict[str, OddValues]]:
    """A frame validated as given (``validate_frame``) may hold timestamps beyond Python's years,
    such as DuckDB's infinity read by pandas: they become NaT and are reported like odd values."""
    import pandas as pd

    lo, hi = REPRESENTABLE_YEARS
    odd: dict[str, OddValues] = {}
    for col in list(frame.columns):
        values = frame[col]
        if not isinstance(values, pd.Series) or not pd.api.types.is_datetime64_any_dtype(values):
            continue
        years = values.dt.year
        bad = values.notna() & ((years < lo) | (years > hi))
        if bad.any():
            odd[str(col)] = OddValues(str(col), "timestamps",
                                      {int(i): _timestamp_text(v) for i, v in values[bad].items()})
            frame[col] = values.mask(bad)  # the caller's frame is a copy (reset_index)
    return frame, odd


def _timestamp_text(value) -> str:
    raw = int(value.asm8.astype("int64"))
    if abs(raw) == _INT64_MAX:
        return "infinity" if raw > 0 else "-infinity"
    try:
        return value.isoformat()
    except (ValueError, OverflowError, NotImplementedError):
        return f"year {value.year}"


# ---------------------------------------------------------------------------------------------
# validating

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
# expectations counting NULL as unexpected: odd values (read as NULL) are in GX's count already
COUNTS_NULLS = frozenset({"expect_column_values_to_not_be_null"})


@dataclass
class _Outcome:
    """What became of one expectation: GX's result, or the error that stopped it."""

    config: Any  # ExpectationConfiguration
    gx_result: Any = None  # ExpectationValidationResult
    error: str | None = None


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
        self._batch_definitions: dict[str, Any] = {}
        self._validated: list[tuple[str, Any]] = []  # (suite name, GX run id) since the last docs build

    def _batch_definition(self, spec: SuiteSpec):
        if spec.name not in self._batch_definitions:
            asset = self._datasource.add_dataframe_asset(name=spec.name)
            self._batch_definitions[spec.name] = asset.add_batch_definition_whole_dataframe("latest_rows")
        return self._batch_definitions[spec.name]

    def _definition(self, spec: SuiteSpec):
        import great_expectations as gx

        if spec.name not in self._definitions:
            suite = self.context.suites.add(build_gx_suite(spec))
            self._definitions[spec.name] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=spec.name, data=self._batch_definition(spec), suite=suite))
        return self._definitions[spec.name]

    def validate(self, spec: SuiteSpec, frame, now: dt.datetime | None = None,
                 result: SuiteResult | None = None,
                 odd_values: dict[str, OddValues] | None = None) -> SuiteResult:
        """Validate a DataFrame against the suite; fills and returns a SuiteResult. Every
        expectation is reported: one that cannot be evaluated fails with its error, one on a
        column holding ``odd_values`` (values read as NULL) fails with the reason."""
        started = time.perf_counter()
        now = now or dt.datetime.now(dt.UTC)
        result = result or _new_result(spec, now)
        frame, scrubbed = _scrub_timestamps(frame.reset_index(drop=True))
        odd = {**(odd_values or {}), **scrubbed}
        outcomes = self._outcomes(spec, frame, spec.parameter_values(now))
        result.rows_validated = len(frame)
        result.n_expectations = len(outcomes)
        result.unrepresentable = {col: o.reason() for col, o in odd.items()}
        for outcome in outcomes:
            failure = _outcome_failure(outcome, frame, odd)
            if failure is None:
                result.n_passed += 1
            else:
                result.failures.append(failure)
        result.seconds += time.perf_counter() - started
        return result

    def _outcomes(self, spec: SuiteSpec, frame, parameters: dict) -> list[_Outcome]:
        """One outcome per expectation of the suite, in the suite's order. The suite runs as a
        whole (its result is stored for Data Docs); GX then reports most errors per expectation
        (``catch_exceptions``), but some stop the whole run (an undefined ``$PARAMETER``) or fail
        every expectation of the metric graph with one error: then the expectations run alone."""
        try:
            definition = self._definition(spec)
            gx_result = definition.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters,
                                       result_format=RESULT_FORMAT)
        except SuiteError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below, each expectation reports
            log.warning("GX suite %s did not run as a whole (%s: %s); running its expectations one by one",
                        spec.name, type(exc).__name__, exc)
            return self._validate_each(spec, frame, parameters, list(build_gx_suite(spec).expectations))
        self._validated.append((spec.name, gx_result.meta.get("run_id")))
        order = {e.id: i for i, e in enumerate(definition.suite.expectations)}
        results = sorted(gx_result.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
        outcomes = [_Outcome(r.expectation_config, r) for r in results if not _exception_text(r)]
        redo = {r.expectation_config.id for r in results if _exception_text(r)}
        if redo:
            again = [e for e in definition.suite.expectations if e.id in redo]
            outcomes += self._validate_each(spec, frame, parameters, again)
        return sorted(outcomes, key=lambda o: order.get(o.config.id, len(order)))

    def _validate_each(self, spec: SuiteSpec, frame, parameters: dict, expectations: list) -> list[_Outcome]:
        """Each expectation validated alone on the frame; an error is that expectation's outcome."""
        try:
            batch = self._batch_definition(spec).get_batch(batch_parameters={"dataframe": frame})
        except Exception as exc:  # noqa: BLE001 - no batch: no expectation can be evaluated
            return [_Outcome(e.configuration, error=_error_text(exc)) for e in expectations]
        outcomes = []
        for expectation in expectations:
            try:
                r = batch.validate(expectation, result_format=RESULT_FORMAT, expectation_parameters=parameters)
                outcomes.append(_Outcome(expectation.configuration, r))
            except Exception as exc:  # noqa: BLE001 - reported as this expectation's failure
                outcomes.append(_Outcome(expectation.configuration, error=_error_text(exc)))
        return outcomes

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
        wanted = {(name, run_id.run_time.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ"))
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


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:2000]


def _exception_text(r) -> str | None:
    """The error GX caught for this expectation, if any (one, or several keyed by metric)."""
    info = r.exception_info or {}
    if "raised_exception" not in info:
        info = next(iter(info.values()), {}) if info else {}
    return (info.get("exception_message") or "an exception was raised") if info.get("raised_exception") else None


def _kwargs(config) -> dict:
    return {k: _plain(v) for k, v in dict(config.kwargs).items() if k not in ("batch_id",)}


def _column(kwargs: dict) -> str | None:
    return kwargs.get("column") or (", ".join(kwargs["column_list"]) if kwargs.get("column_list") else None)


def _columns(kwargs: dict) -> list[str]:
    """Every column an expectation reads (column, column_A/column_B, column_list)."""
    names = [kwargs.get(k) for k in ("column", "column_A", "column_B")] + list(kwargs.get("column_list") or [])
    return [str(n) for n in names if n]


def _outcome_failure(outcome: _Outcome, frame, odd: dict[str, OddValues]) -> FailedExpectation | None:
    """The failure an outcome makes, or None when the expectation passed."""
    if outcome.error is not None:
        kwargs = _kwargs(outcome.config)
        failure = FailedExpectation(type=outcome.config.type, column=_column(kwargs), kwargs=kwargs,
                                    exception=outcome.error)
        here = _odd_here(kwargs, odd)
        return _with_odd_values(failure, here, [], frame, odd) if here else failure
    failure = _failure(outcome.gx_result, frame, odd)
    here = _odd_here(failure.kwargs, odd)
    if here:  # GX judged the other rows only: the values it saw as NULL fail it
        return _with_odd_values(failure, here, _unexpected_index(outcome.gx_result), frame, odd)
    return None if outcome.gx_result.success else failure


def _odd_here(kwargs: dict, odd: dict[str, OddValues]) -> list[OddValues]:
    return [odd[c] for c in _columns(kwargs) if c in odd]


def _unexpected_index(r) -> list[int]:
    return [i for i in ((r.result or {}).get("partial_unexpected_index_list") or []) if isinstance(i, int)]


def _failure(r, frame, odd: dict[str, OddValues] | None = None) -> FailedExpectation:
    config = r.expectation_config
    kwargs = _kwargs(config)
    info = r.result or {}
    return FailedExpectation(
        type=config.type,
        column=_column(kwargs),
        kwargs=kwargs,
        unexpected_count=info.get("unexpected_count"),
        unexpected_percent=_plain(info.get("unexpected_percent")),
        observed_value=_plain(info.get("observed_value")),
        sample_values=[_plain(v) for v in (info.get("partial_unexpected_list") or [])[:SAMPLE_ROWS]],
        sample_rows=_sample_rows(frame, _unexpected_index(r), odd),
        exception=_exception_text(r),
    )


def _sample_rows(frame, index: list[int], odd: dict[str, OddValues] | None = None) -> list[dict]:
    """Rows of the frame by position, JSON-friendly; odd values shown as the database prints them
    (``infinity``), not as the NULL the frame holds."""
    index = list(dict.fromkeys(i for i in index if 0 <= i < len(frame)))[:SAMPLE_ROWS]
    if not index:
        return []
    rows = [{k: _plain(v) for k, v in row.items()} for row in frame.iloc[index].to_dict("records")]
    for i, row in zip(index, rows, strict=True):
        row.update({o.column: o.texts[i] for o in (odd or {}).values() if i in o.texts})
    return rows


def _with_odd_values(failure: FailedExpectation, here: list[OddValues], gx_index: list[int], frame,
                     odd: dict[str, OddValues]) -> FailedExpectation:
    """Fail an expectation whose column holds values GX saw as NULL (``here``): the reason names
    them, their rows join the unexpected count and come first among the samples."""
    failure.reason = "; ".join(o.reason() for o in here)
    positions = sorted(set().union(*(o.texts for o in here)))
    if failure.unexpected_count is not None and failure.type not in COUNTS_NULLS:
        failure.unexpected_count += len(positions)
        failure.unexpected_percent = 100.0 * failure.unexpected_count / len(frame) if len(frame) else None
    odd_texts = list(dict.fromkeys(t for o in here for t in o.texts.values()))
    gx_values = [v for v in failure.sample_values if v is not None] if failure.type in COUNTS_NULLS \
        else failure.sample_values  # GX's NULLs there are the odd values themselves
    failure.sample_values = (odd_texts + gx_values)[:SAMPLE_ROWS]
    failure.sample_rows = _sample_rows(frame, positions + gx_index, odd)
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
    """Read the suite's rows from the warehouse and validate them. Always a result: a failing read
    (missing relation, SQL error) comes back failed with ``error`` set, an expectation that cannot
    be evaluated as a failure with its ``exception``; only a bad suite file raises SuiteError."""
    now = now or dt.datetime.now(dt.UTC)
    result = _new_result(spec, now)
    runner = runner or GxRunner(docs_dir=None, results_dir=None)
    started = time.perf_counter()
    try:
        rows = read_suite_rows(location, spec)
    except Exception as exc:  # noqa: BLE001 - reported in the result, the check fails
        result.error = _error_text(exc)
        result.seconds = time.perf_counter() - started
        return result
    result.seconds = time.perf_counter() - started
    return runner.validate(spec, rows.frame, now, result=result, odd_values=rows.odd_values)
