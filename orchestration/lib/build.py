"""Build the marts outside Dagster: the one entry point for tests, the demo and the benchmarks.

The marts are built in three steps, in the order the Dagster graph runs them
(fct_system_events → mart_error_templates → the template marts):

1. ``dbt build --exclude tag:after_templates``: staging, facts and every mart not reading templates;
2. ``refresh_templates``: mine the error events not mined yet (marts.error_event_templates, …);
3. ``dbt build --select tag:after_templates``: the marts reading the templates (dbt source
   ``templates``), with their data tests (unit tests only when asked: they are for CI).

Every dbt call gets ``--vars {as_of: …}`` so all three steps use the same reporting window.
The Dagster assets build the same selections with the same arguments (``dbt_build_args``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration.lib.dbt_env import dbt_env, dbt_target
from orchestration.lib.settings import DBT_PROJECT_DIR, Location
from orchestration.lib.templates.warehouse import TemplateRunResult, refresh_templates

# the dbt tag of the models reading the mined templates (models/marts/templates/)
AFTER_TEMPLATES_TAG = "after_templates"
AFTER_TEMPLATES_SELECTOR = f"tag:{AFTER_TEMPLATES_TAG}"


def dbt_executable() -> str:
    """The dbt beside this interpreter (the venv's), so nothing depends on the venv being on PATH."""
    venv_dbt = Path(sys.executable).parent / "dbt"
    return str(venv_dbt) if venv_dbt.exists() else "dbt"


def dbt_build_args(as_of: str | None = None, full_refresh: bool = False, *, select: str | None = None,
                   exclude: str | None = None, extra_vars: Mapping[str, Any] | None = None,
                   unit_tests: bool = False) -> list[str]:
    """Arguments of one ``dbt build`` (without project, profile and target options).

    dbt unit tests check the models' SQL on fixed inputs, not the data: they belong to CI (``make
    test`` runs each once per target, tests/test_template_marts.py), not to every hourly run, where
    they were ~30 % of the build (57 of ~660 nodes, each creating and dropping its fixture tables).
    ``unit_tests=True`` keeps them (dbt's own advice: exclude them in production)."""
    args = ["build"]
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    dbt_vars = {**({"as_of": as_of} if as_of else {}), **(extra_vars or {})}
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    return args


PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def publish_partial_parse(invocation_target: Path, project_target: Path) -> bool:
    """Make one dbt invocation's parse the starting point of the next.

    dagster-dbt gives every invocation its own target directory and seeds it with
    ``<project>/target/partial_parse.msgpack``; dbt reuses that file only when the target, the profile
    and the ``--vars`` match. The file ``dbt parse`` left there (the default target, no vars) never
    matches a run's ``--target postgres --vars {time_floor: …}``, so every run parsed the whole
    project twice (~10 s each on 2 cores, against ~4 s from a matching file). Replaced atomically:
    a concurrent invocation copies the old file or the new one, never half of one. Returns whether a
    file was published; a missing or unwritable one only costs the next run a full parse."""
    source = Path(invocation_target) / PARTIAL_PARSE_FILE
    if not source.is_file():
        return False
    destination = Path(project_target) / PARTIAL_PARSE_FILE
    staging = None
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own per call: two invocations of one process (threads) never share it
        fd, staging = tempfile.mkstemp(dir=destination.parent, prefix=f".{PARTIAL_PARSE_FILE}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(source.read_bytes())
        os.replace(staging, destination)
    except OSError:
        if staging is not None:
            Path(staging).unlink(missing_ok=True)
        return False
    return True


def time_floor_var() -> dict[str, str]:
    """The extractor's time floor (OPS_TIME_FLOOR) for the models that bound series by it."""
    from orchestration.lib.settings import time_floor

    return {"time_floor": time_floor().isoformat()}


class BuildError(RuntimeError):
    """A dbt step failed; the message ends with the tail of dbt's output."""


@dataclass
class DbtRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    # (unique_id, status, execution_time s) per node, from run_results.json
    results: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class BuildResult:
    core: DbtRun  # dbt build --exclude tag:after_templates
    templates: TemplateRunResult  # refresh_templates
    templates_seconds: float
    template_marts: DbtRun  # dbt build --select tag:after_templates
    seconds: float

    @property
    def mining_events_per_second(self) -> float | None:
        if not self.templates.events_mined or self.templates_seconds <= 0:
            return None
        return self.templates.events_mined / self.templates_seconds


def run_dbt(warehouse: Location, args: list[str], *, target_path: Path, timeout: float | None = None,
            check: bool = True) -> DbtRun:
    """One dbt command on the warehouse's target; ``target_path`` also holds dbt's logs."""
    env = {**os.environ, **dbt_env(warehouse)}
    cmd = [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
           "--target", dbt_target(warehouse), "--target-path", str(target_path),
           "--log-path", str(target_path / "logs")]
    results_path = target_path / "run_results.json"
    results_path.unlink(missing_ok=True)  # never read a previous command's results
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    run = DbtRun(args=args, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                 seconds=time.perf_counter() - started)
    if results_path.exists():
        run.results = [(r["unique_id"], r["status"], r["execution_time"])
                       for r in json.loads(results_path.read_text())["results"]]
    if check and not run.ok:
        raise BuildError(f"dbt {' '.join(args)} failed on {warehouse.redacted()} (exit {proc.returncode}):\n"
                         f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return run


def build_marts(warehouse: Location, as_of: datetime, full_refresh: bool = False, *,
                dbt_vars: Mapping[str, Any] | None = None, target_path: Path | None = None,
                timeout: float | None = 1800, unit_tests: bool = False) -> BuildResult:
    """dbt build (all but the template marts) → refresh_templates → dbt build (the template marts).

    ``as_of`` ends every reporting window (dbt var ``as_of`` and the miner's 7/30-day counts);
    ``full_refresh`` rebuilds the incremental models; ``dbt_vars`` adds dbt vars (e.g.
    ``fct_lookback_hours``); ``unit_tests`` runs dbt's unit tests too (CI); ``target_path`` is dbt's target directory (default: a fresh temporary
    one per call, so concurrent builds never share dbt's files). Raises BuildError when a dbt
    step fails (nothing after it runs).
    """
    if as_of.tzinfo is None:
        raise ValueError("build_marts: as_of must be timezone-aware")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ops_dbt_") as tmp:
        path = Path(target_path) if target_path else Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        common = {"as_of": as_of.isoformat(), "full_refresh": full_refresh, "unit_tests": unit_tests,
                  "extra_vars": {**time_floor_var(), **(dbt_vars or {})}}
        core = run_dbt(warehouse, dbt_build_args(**common, exclude=AFTER_TEMPLATES_SELECTOR),
                       target_path=path, timeout=timeout)
        mined_at = time.perf_counter()
        templates = refresh_templates(warehouse, as_of)
        templates_seconds = time.perf_counter() - mined_at
        template_marts = run_dbt(warehouse, dbt_build_args(**common, select=AFTER_TEMPLATES_SELECTOR),
                                 target_path=path, timeout=timeout)
    return BuildResult(core=core, templates=templates, templates_seconds=templates_seconds,
                       template_marts=template_marts, seconds=time.perf_counter() - started)
