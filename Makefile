# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo test bench dev manifest lint clean browser compose prod-smoke

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/ops-warehouse demo

# headless Chromium for tests/test_report_browser.py (Debian's package; never `playwright install`)
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "error: $(CHROMIUM) is missing; run as root: apt-get install -y chromium" >&2; exit 1; fi

# docker-compose for tests/test_compose.py (`docker-compose config`; Debian's package, no Docker
# engine needed)
DOCKER_COMPOSE ?= docker-compose
compose:
	@if command -v $(DOCKER_COMPOSE) >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose; \
	else echo "error: $(DOCKER_COMPOSE) is missing; run as root: apt-get install -y docker-compose" >&2; exit 1; fi

# two workers: the shared simulated month on one, the other modules spread (tests/conftest.py);
# includes tests/test_compose.py and the no-Docker production stack, tests/test_prod_smoke.py
test: install browser compose
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

# the docker-compose stack's processes (code server, webserver, daemon, simulator) without Docker,
# on PostgreSQL, until a scheduled run has succeeded and the alert sensors ticked (~2-3 min)
prod-smoke: install
	$(BIN)/python -m pytest -q -s tests/test_prod_smoke.py

bench: install
	$(BIN)/ops-warehouse bench extract --rows 1000000 --json benchmarks/results/extract.json

# the dev instance runs one warehouse writer at a time (the hourly job, the alert fast lane), as
# deploy/dagster.yaml does: both carry the run tag ops-warehouse/serial=warehouse_writer
dev: install
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || printf "telemetry:\n  enabled: false\n" > $(DAGSTER_HOME)/dagster.yaml
	grep -q "ops-warehouse/serial" $(DAGSTER_HOME)/dagster.yaml || printf "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n  config:\n    tag_concurrency_limits:\n      - key: ops-warehouse/serial\n        value: warehouse_writer\n        limit: 1\n" >> $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m orchestration.definitions

clean:
	rm -rf data .dagster_home dbt_project/target dbt_project/logs
