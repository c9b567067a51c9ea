"""docker-compose.yml, the Dockerfile and deploy/: validated by docker-compose itself and checked for
what a production stack needs (pinned images, health checks, restart policies, named volumes,
secrets only from files). tests/test_prod_smoke.py runs the same commands without Docker.

Needs the docker-compose binary (Debian's package; ``make test`` installs it when run as root):
without it this test fails, it does not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
CORE = {"warehouse-db", "dagster-db", "code", "webserver", "daemon"}
DEMO = {"bot-db", "simulator"}
APP_SERVICES = {"code", "webserver", "daemon", "simulator"}
PG_SERVICES = {"warehouse-db", "dagster-db", "bot-db"}
CODE_COMMAND = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions"]
WORKSPACE = "/opt/dagster/app/deploy/workspace.yaml"


def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: `apt-get install -y docker-compose` (as root, "
                    "`make test` does it), then run this test again", pytrace=False)
    return binary


def compose_config(*args: str) -> dict:
    """`docker-compose [args] config` on the file, with the example env file (the real
    deploy/ops-warehouse.env is the operator's and is not in the repository)."""
    env = {**os.environ, "OPS_ENV_FILE": str(DEPLOY / "ops-warehouse.env.example")}
    for var in ("OPS_SECRETS_DIR", "OPS_DAGSTER_UI_BIND", "OPS_WAREHOUSE_BIND", "OPS_DBT_THREADS"):
        env.pop(var, None)
    result = subprocess.run([docker_compose(), "-f", str(COMPOSE_FILE), *args, "config"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"docker-compose {' '.join(args)} config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config()


def test_compose_config_validates_with_and_without_the_demo_profile(config):
    demo = compose_config("--profile", "demo")
    assert set(demo["services"]) == CORE | DEMO
    # docker-compose v1 (Debian's 1.29) lists every service in `config` whatever the profile: the
    # profile itself is what keeps the demo services out of a plain `up`
    assert CORE <= set(config["services"])
    for name, service in config["services"].items():
        assert service.get("profiles", []) == (["demo"] if name in DEMO else []), name


def test_images_are_pinned(config):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in config["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"
        if name in PG_SERVICES:
            assert re.fullmatch(r"postgres:16\.\d+-bookworm", image), f"{name}: {image}"
        else:
            assert image == f"ops-warehouse:{version}", f"{name}: {image}"
            assert service["build"]["dockerfile"] == "Dockerfile"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", dockerfile, re.M), "base image not pinned"


def test_dockerfile_installs_from_the_lock_and_runs_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -c requirements.lock" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert 'ENTRYPOINT ["/opt/dagster/app/deploy/entrypoint.sh"]' in dockerfile
    assert re.search(r"^WORKDIR /opt/dagster/app$", dockerfile, re.M)  # test_prod_smoke maps this path
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in ("deploy/secrets", "deploy/*.env", ".venv", "data", ".git"):
        assert path in ignored, f".dockerignore must exclude {path}"


def test_every_service_has_a_health_check_and_a_restart_policy(config):
    for name, service in config["services"].items():
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: restart {service.get('restart')}"
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD" and not service["healthcheck"].get("disable"), f"{name}: no health check"
        if name in PG_SERVICES:
            assert test[1] == "pg_isready"
    services = config["services"]
    assert services["code"]["healthcheck"]["test"][1:] == ["dagster", "api", "grpc-health-check", "-p", "4000"]
    assert "/server_info" in " ".join(services["webserver"]["healthcheck"]["test"])
    assert services["daemon"]["healthcheck"]["test"][-2:] == ["dagster-daemon", "liveness-check"]


def test_the_dagster_services_and_their_wiring(config):
    services = config["services"]
    # the commands tests/test_prod_smoke.py runs (it reads them from this file)
    assert services["code"]["command"] == CODE_COMMAND
    assert services["webserver"]["command"] == ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", WORKSPACE]
    assert services["daemon"]["command"] == ["dagster-daemon", "run", "-w", WORKSPACE]
    assert services["simulator"]["command"] == ["/opt/dagster/app/deploy/demo-simulator.sh"]
    for name in ("webserver", "daemon"):  # deploy/workspace.yaml reads the code server from these
        env = services[name]["environment"]
        assert (env["OPS_CODE_SERVER_HOST"], env["OPS_CODE_SERVER_PORT"]) == ("code", "4000"), name
        assert services[name]["depends_on"]["code"]["condition"] == "service_healthy"
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert workspace["load_from"] == [{"grpc_server": {"host": {"env": "OPS_CODE_SERVER_HOST"},
                                                       "port": {"env": "OPS_CODE_SERVER_PORT"},
                                                       "location_name": "ops_warehouse"}}]
    for name in ("code", "webserver", "daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_PG_HOST"] == "dagster-db" and env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        assert services[name]["depends_on"]["dagster-db"]["condition"] == "service_healthy"
    assert services["code"]["depends_on"]["warehouse-db"]["condition"] == "service_healthy"
    assert services["simulator"]["depends_on"]["bot-db"]["condition"] == "service_healthy"
    # the UI and the warehouse are published on loopback unless told otherwise; Dagster's storage never
    assert [str(p) for p in services["webserver"]["ports"]] == ["127.0.0.1:3000:3000/tcp"]
    assert [str(p) for p in services["warehouse-db"]["ports"]] == ["127.0.0.1:5433:5432/tcp"]
    assert "ports" not in services["dagster-db"] and "ports" not in services["code"]


def test_the_run_queue_serializes_extract_and_build():
    from orchestration.defs.schedules import SERIAL_TAG, extract_and_build_job

    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = instance["run_coordinator"]["config"]["tag_concurrency_limits"]
    (key, value), = SERIAL_TAG.items()
    assert {"key": key, "value": value, "limit": 1} in limits
    assert extract_and_build_job.tags[key] == value  # the limit matches a tag the job's runs carry
    # psycopg2: SQLAlchemy 2.1 would pick psycopg 3, on which the webserver's connections close
    assert instance["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_databases_keep_their_data_in_named_volumes(config):
    declared = set(config["volumes"])
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
            assert source in declared, f"{name}: {source} is not a named volume"
    for name in PG_SERVICES:
        targets = {v.split(":")[1] if isinstance(v, str) else v["target"]: v for v in config["services"][name]["volumes"]}
        assert "/var/lib/postgresql/data" in targets, name
    assert config["services"]["warehouse-db"]["volumes"] != config["services"]["dagster-db"]["volumes"]


# secrets the image's entrypoint reads from NAME_FILE (deploy/entrypoint.sh), and Postgres' own
SECRET_VARS = {"DAGSTER_PG_PASSWORD", "POSTGRES_PASSWORD", "OPS_SOURCE_URL", "OPS_WAREHOUSE_URL",
               "OPS_ALERT_SLACK_WEBHOOK_URL", "OPS_ALERT_WEBHOOK_URL", "OPS_ALERT_SMTP_PASSWORD"}
SECRET_LITERAL = re.compile(r"(?i)(password|secret|token)\s*[:=]\s*['\"]?(?!/run/secrets/)[^\s'\"$]+"
                            r"|://[^/\s:@]+:[^/\s@$]+@")


def test_no_secret_in_the_compose_file_or_the_env_example(config):
    for path in (COMPOSE_FILE, DEPLOY / "ops-warehouse.env.example"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0] if path.suffix == ".yml" else line
            if path.suffix != ".yml" and code.lstrip().startswith("#"):
                code = code.lstrip("# ")  # commented examples must not hold secrets either
            assert not SECRET_LITERAL.search(code.replace("<password>", "")), f"{path.name}:{number}: {line.strip()}"
    for name, service in config["services"].items():
        env = service.get("environment") or {}
        for var, value in env.items():
            if var in SECRET_VARS:
                pytest.fail(f"{name}: {var} is set as a value; give it as {var}_FILE (a secret)")
            if var.endswith("_FILE") and var != "OPS_ENV_FILE":
                assert str(value).startswith("/run/secrets/"), f"{name}: {var}={value}"
                secret = str(value).rsplit("/", 1)[1]
                assert secret in {s if isinstance(s, str) else s["source"] for s in service["secrets"]}, (name, secret)
    for secret in config["secrets"].values():
        assert "deploy/secrets/" in secret["file"]
    assert (DEPLOY / "secrets" / ".gitignore").read_text().split()[-2:] == ["*", "!.gitignore"]


def test_entrypoint_reads_secrets_from_files(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("p@ss w$rd'\"\n")
    home = tmp_path / "home"
    env = {"PATH": os.environ["PATH"], "DAGSTER_PG_PASSWORD_FILE": str(secret), "DAGSTER_HOME": str(home)}
    out = subprocess.run([str(DEPLOY / "entrypoint.sh"), "sh", "-c", 'printf %s "$DAGSTER_PG_PASSWORD|${DAGSTER_PG_PASSWORD_FILE:-}"'],
                         env=env, capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "p@ss w$rd'\"|")  # the value, and the _FILE variable unset
    assert (home / "dagster.yaml").read_text() == (DEPLOY / "dagster.yaml").read_text()
    both = subprocess.run([str(DEPLOY / "entrypoint.sh"), "true"], env={**env, "DAGSTER_PG_PASSWORD": "x"},
                          capture_output=True, text=True, timeout=30)
    assert both.returncode != 0 and "set only one" in both.stderr
    missing = subprocess.run([str(DEPLOY / "entrypoint.sh"), "true"],
                             env={**env, "DAGSTER_PG_PASSWORD_FILE": str(tmp_path / "nope")},
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and "not a readable file" in missing.stderr


def test_init_secrets_writes_every_secret_the_compose_file_reads(tmp_path, config):
    secrets = tmp_path / "secrets"
    env = {"PATH": os.environ["PATH"], "OPS_SECRETS_DIR": str(secrets)}
    script = str(DEPLOY / "init-secrets.sh")
    refused = subprocess.run([script], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "ops_source_url" in refused.stderr  # no source DSN given
    subprocess.run([script, "--demo"], env=env, check=True, capture_output=True, timeout=30)
    assert {p.name for p in secrets.iterdir()} == set(config["secrets"])
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    warehouse_pw = (secrets / "warehouse_pg_password").read_text().strip()
    assert len(warehouse_pw) >= 24
    assert (secrets / "ops_warehouse_url").read_text().strip() == \
        f"postgresql://ops_warehouse:{warehouse_pw}@warehouse-db:5432/warehouse"
    assert (secrets / "ops_source_url").read_text().startswith("postgresql://bot:")
    before = {p.name: p.read_text() for p in secrets.iterdir()}
    subprocess.run([script], env=env, check=True, capture_output=True, timeout=30)  # kept, not regenerated
    assert before == {p.name: p.read_text() for p in secrets.iterdir()}
