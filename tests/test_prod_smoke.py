"""The production stack of docker-compose.yml, without Docker (``make prod-smoke``; part of ``make test``).

The commands and environments of the compose services ``code`` (the gRPC code server),
``webserver``, ``daemon`` and ``simulator`` are read from docker-compose.yml and run as local
processes through the image's entrypoint (deploy/entrypoint.sh: secrets from ``*_FILE``), with the
same deploy/dagster.yaml (PostgreSQL storage, queued runs) and deploy/workspace.yaml. Only what
belongs to the container is swapped: hosts and ports (127.0.0.1, free ports), paths under
/opt/dagster (a temp dir, this checkout), secret files (temp files) and the databases (fresh
PostgreSQL databases here: Dagster's storage, the warehouse, and the bot's source, which the demo
simulator fills with a day of history and then keeps writing to in real time).

With the hourly schedule's cron set to every minute (OPS_EXTRACT_CRON), the test waits for the
daemon to launch extract_and_build through the queue, for the run to succeed, and for the alert
sensors to tick on it (alerts_after_warehouse_update evaluating the rules after that run;
alerts_timer), all read through the webserver's GraphQL API. Every process is stopped by process
group in a ``finally`` and none may be left behind; the databases are dropped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from orchestration.defs.alerts.sensors import RUN_SENSOR_INTERVAL_SECONDS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
IMAGE_APP_DIR = "/opt/dagster/app"  # the Dockerfile's WORKDIR: this checkout here
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent
ADMIN_DSN = os.environ.get("OPS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

EXTRACT_JOB = "extract_and_build"
SCHEDULE = "hourly_extract_and_build"
RUN_SENSOR = "alerts_after_warehouse_update"
TIMER_SENSOR = "alerts_timer"
LOCATION = "ops_warehouse"  # deploy/workspace.yaml location_name

# Time, measured on an idle 2-core machine: ~12 s to start the stack, then the wait for the next
# minute (0-60 s, the cron), ~15-20 s from the schedule's tick to the run's start (Dagster stores a
# "planned" event per asset and per check, ~600, each on a new connection), ~75 s of run (dbt build on
# PostgreSQL: ~45 s of execution plus its parse), up to 10 s to the run-status sensor's next tick, a few
# seconds to stop: 120-180 s. A machine loaded by other tests (make test runs two workers) slows the
# run, so the waits fail only past HARD_LIMIT_SECONDS.
BUDGET_SECONDS = 180
HARD_LIMIT_SECONDS = 270
SENSOR_TICK_SECONDS = RUN_SENSOR_INTERVAL_SECONDS  # alerts_after_warehouse_update's minimum interval


# ---------------------------------------------------------------------------------------------
# docker-compose.yml, read so that the commands run here cannot drift from the file


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]  # SafeLoader merges `<<:` keys


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults (the file's own values, not this shell's)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)


def service_command(service: str) -> list[str]:
    command = compose_services()[service]["command"]
    assert isinstance(command, list), f"{service}: command must be a list (exec form)"
    return [str(arg) for arg in command]


def service_environment(service: str) -> dict[str, str]:
    env = compose_services()[service].get("environment") or {}
    assert isinstance(env, dict), f"{service}: environment must be a mapping"
    return {k: _interpolate(str(v)) for k, v in env.items()}


def localize(command: list[str], *, host: str | None = None, port: int | None = None) -> list[str]:
    """The container's command as a local one: -h <host>, -p <port>, paths in this checkout."""
    out = list(command)
    for i, arg in enumerate(out[:-1]):
        if arg == "-h" and host is not None:
            out[i + 1] = host
        if arg == "-p" and port is not None:
            out[i + 1] = str(port)
    return [str(ROOT / arg[len(IMAGE_APP_DIR) + 1:]) if arg.startswith(IMAGE_APP_DIR + "/") else arg for arg in out]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# processes


class Stack:
    """Local processes, each in its own process group (so its children go with it), logs in files."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen([str(ENTRYPOINT), *command], env=env, cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        text = self.logs[name].read_text(errors="replace") if name in self.logs else ""
        return f"--- {name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])

    def tails(self) -> str:
        return "\n".join(self.tail(name) for name in self.procs)

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM to every group, then SIGKILL to what is still there after ``timeout``."""
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # children that outlived their leader (the run worker of a run in progress) are in the group
        deadline = time.monotonic() + 10
        while any(_group_alive(p.pid) for p in self.procs.values()) and time.monotonic() < deadline:
            for proc in self.procs.values():
                _signal_group(proc.pid, signal.SIGKILL)
            time.sleep(0.2)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def processes_with_env(marker: str) -> list[str]:
    """Processes whose environment holds ``marker`` (this test's DAGSTER_HOME): none may be left."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc_dir / "environ").read_bytes():
                cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc_dir.name}: {cmdline}")
        except OSError:
            continue
    return found


def wait_for(what: str, probe: Callable[[], object], timeout: float, stack: Stack, interval: float = 1.0):
    """Call ``probe`` until it returns something truthy; fail with the processes' logs on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        stack.check_alive()
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{stack.tails()}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# the webserver's GraphQL API

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}"""

TICKS_QUERY = """
query Ticks($selector: InstigationSelector!) {
  instigationStateOrError(instigationSelector: $selector) {
    __typename
    ... on InstigationState { status ticks(limit: 100) { status timestamp skipReason runIds error { message } } }
    ... on PythonError { message }
  }
}"""


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"GraphQL {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from None
    assert not body.get("errors"), body["errors"]
    return body["data"]


def extract_runs(url: str) -> list[dict]:
    data = graphql(url, RUNS_QUERY, {"filter": {"pipelineName": EXTRACT_JOB}})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return data["results"]


def sensor_ticks(url: str, sensor: str) -> list[dict]:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "name": sensor}
    data = graphql(url, TICKS_QUERY, {"selector": selector})["instigationStateOrError"]
    assert data["__typename"] == "InstigationState", data
    assert data["status"] == "RUNNING", f"{sensor} is {data['status']}"
    return data["ticks"]


def server_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def evaluated(tick: dict) -> bool:
    """A tick of the alert sensors that ran the rules on the warehouse (their skip reason says so)."""
    return tick["status"] in ("SKIPPED", "SUCCESS") and (tick["skipReason"] or "").startswith("evaluated at ")


# ---------------------------------------------------------------------------------------------


def test_compose_stack_without_docker(pg_databases, tmp_path):
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(label: str) -> None:
        timings[label] = time.monotonic() - started

    dagster_dsn = pg_databases.new("dagster")
    warehouse_dsn = pg_databases.new("warehouse")
    source_dsn = pg_databases.new("source")
    pg = urlsplit(dagster_dsn)

    home = tmp_path / "dagster_home"  # the image's /opt/dagster/dagster_home
    data_dir = tmp_path / "data"      # the image's /opt/dagster/data (volume ops-data)
    secrets = tmp_path / "secrets"    # /run/secrets
    for d in (home, data_dir, secrets):
        d.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    secret_values = {"dagster_pg_password": pg.password or "unused-trust-auth",
                     "ops_warehouse_url": warehouse_dsn, "ops_source_url": source_dsn}
    for name, value in secret_values.items():
        (secrets / name).write_text(value + "\n")

    code_port, web_port = free_port(), free_port()
    url = f"http://127.0.0.1:{web_port}"

    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "DAGSTER_", "DBT_"))}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"

    def environment(service: str, **extra: str) -> dict[str, str]:
        """The service's compose environment with the container's values swapped for local ones;
        every swapped variable must be one the compose file sets."""
        env = service_environment(service)
        local = {
            "DAGSTER_HOME": str(home), "OPS_DATA_DIR": str(data_dir),
            "DAGSTER_PG_HOST": pg.hostname or "127.0.0.1", "DAGSTER_PG_PORT": str(pg.port or 5432),
            "DAGSTER_PG_USER": pg.username or "postgres", "DAGSTER_PG_DB": pg.path.lstrip("/"),
            "OPS_CODE_SERVER_HOST": "127.0.0.1", "OPS_CODE_SERVER_PORT": str(code_port),
        }
        for key, value in env.items():
            if key in local:
                env[key] = local[key]
            elif value.startswith("/run/secrets/"):
                env[key] = str(secrets / value.rsplit("/", 1)[1])
        assert not [v for v in env.values() if v.startswith("/opt/dagster/")], env
        return {**base, **env, **extra}

    stack = Stack(tmp_path)
    try:
        # the bot's database (the demo simulator: a day of history, then live events) and the code
        # server, started together
        stack.start("simulator", localize(service_command("simulator")),
                    environment("simulator", OPS_DEMO_HISTORY_DAYS="1", OPS_DEMO_RATE="5"))
        code_cmd = localize(service_command("code"), host="127.0.0.1", port=code_port)
        # the operator's rules file, set the way a deployment sets it: a day of this calm history fires
        # only digest rules (sent at 08:00 UTC), so one of them pages here to see a delivery — at
        # "> 0": the simulated bot's quiet night hours can log 10 errors or fewer (a run at 01:59 UTC
        # paged nothing at the checklist's "> 10")
        rules_file = tmp_path / "rules.yml"
        rules_file.write_text('builtin_overrides:\n  errors_per_hour:\n    condition: "> 0"\n    delivery: page\n')
        stack.start("code", code_cmd, environment("code", OPS_EXTRACT_CRON="* * * * *",
                                                  OPS_ALERT_RULES_FILE=str(rules_file)))
        wait_for("the simulator's history", lambda: "history in place; following" in stack.logs["simulator"].read_text(),
                 120, stack)
        mark("source simulated")
        health = localize(compose_services()["code"]["healthcheck"]["test"][1:], port=code_port)
        wait_for("the code server's health check", lambda: subprocess.run(
            health, env=environment("code"), capture_output=True).returncode == 0, 120, stack, interval=1)
        mark("code server healthy")

        stack.start("webserver", localize(service_command("webserver"), host="127.0.0.1", port=web_port),
                    environment("webserver"))
        stack.start("daemon", localize(service_command("daemon")), environment("daemon"))
        wait_for("the webserver", lambda: server_up(url), 90, stack)
        mark("webserver up")

        def remaining(reserve: float = 0) -> float:
            return HARD_LIMIT_SECONDS - reserve - (time.monotonic() - started)

        def finished_run():
            runs = [r for r in extract_runs(url) if {"key": "dagster/schedule_name", "value": SCHEDULE} in r["tags"]]
            if runs and "run_launched" not in timings:
                mark("run_launched")
            # a run queued at the next minute waits for this one: the run queue's limit of one
            in_progress = [r["runId"] for r in runs if r["status"] in ("STARTING", "STARTED")]
            assert len(in_progress) <= 1, f"two extract_and_build runs at once: {in_progress}"
            for run in runs:
                if run["status"] in ("FAILURE", "CANCELED"):
                    raise AssertionError(f"scheduled run {run['runId']} {run['status']}\n{stack.tails()}")
                if run["status"] == "SUCCESS":
                    return run
            return None

        run = wait_for("the scheduled extract_and_build run to succeed", finished_run,
                       remaining(reserve=SENSOR_TICK_SECONDS + 10), stack, interval=2)
        mark("run succeeded")
        assert {"key": "ops-warehouse/serial", "value": "warehouse_writer"} in run["tags"]  # the run queue's limit

        def sensor_evaluated_after_run():
            ticks = sensor_ticks(url, RUN_SENSOR)
            failed = [t for t in ticks if t["status"] == "FAILURE"]
            assert not failed, f"{RUN_SENSOR} failed: {failed[0]['error']}\n{stack.tails()}"
            return [t for t in ticks if evaluated(t) and t["timestamp"] >= run["endTime"]]

        after = wait_for(f"{RUN_SENSOR} to evaluate the rules after the run", sensor_evaluated_after_run,
                         remaining(), stack, interval=2)
        mark("run-status sensor evaluated")
        timer = sensor_ticks(url, TIMER_SENSOR)
        assert any(evaluated(t) for t in timer), timer
        assert not [t for t in timer if t["status"] == "FAILURE"], timer
        print(f"\n{RUN_SENSOR}: {after[-1]['skipReason']}\n{TIMER_SENSOR}: {timer[0]['skipReason']}")
        # a sensor's tick delivered through the file channel into OPS_DATA_DIR (volume ops-data): the
        # run-status sensor's, or the timer sensor's when its tick came first after the run (under load
        # it can; the run-status tick then finds the alert already sent and sends nothing again)
        delivered = [t["skipReason"] for t in after + sensor_ticks(url, TIMER_SENSOR)
                     if re.search(r", sent [1-9]\d*, failed 0, pending 0", t.get("skipReason") or "")]
        assert delivered, [t.get("skipReason") for t in after + sensor_ticks(url, TIMER_SENSOR)]
        assert "errors_per_hour" in (data_dir / "alerts" / "notifications.log").read_text()
    finally:
        stack.stop()
        mark("stopped")
        print("prod smoke timings (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
              + (" (within" if timings["stopped"] <= BUDGET_SECONDS else " (OVER") + f" the {BUDGET_SECONDS} s budget)")
        left = processes_with_env(str(home))
    assert not left, f"processes left running: {left}"
