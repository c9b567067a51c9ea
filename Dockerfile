# syntax=docker/dockerfile:1
# One image for every ops-warehouse service (docker-compose.yml): the gRPC code server, which also
# executes the runs, dagster-webserver, dagster-daemon and the demo simulator.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    OPS_DATA_DIR=/opt/dagster/data \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DO_NOT_TRACK=1

RUN groupadd --system --gid 10001 ops \
 && useradd --system --uid 10001 --gid ops --home-dir /opt/dagster --no-create-home --shell /usr/sbin/nologin ops

WORKDIR /opt/dagster/app

# The direct dependencies first, constrained by the lock (this layer stays cached while only the
# code changes). The lock also pins the dev tools; -c installs only what is asked for.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/direct-requirements.txt \
 && pip install -c requirements.lock -r /tmp/direct-requirements.txt \
 && rm /tmp/direct-requirements.txt

# The project itself: `pip install -c requirements.lock -e .` (editable, --no-deps: everything is
# installed above). Editable because the code finds dbt_project/, alerts/ and expectations/ next
# to the package (orchestration/lib/settings.py PROJECT_ROOT). Then the dbt project is parsed and
# every definition loaded once (a broken image fails here, not at start), the instance config put
# in DAGSTER_HOME, and the directories written at run time given to the non-root user: dbt writes
# dbt_project/target and logs, Dagster compute logs under DAGSTER_HOME/storage.
COPY . .
RUN pip install -c requirements.lock --no-deps -e . \
 && python -c "import orchestration.definitions" \
 && mkdir -p "$DAGSTER_HOME/storage" "$OPS_DATA_DIR" \
 && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
 && rm -rf "$OPS_DATA_DIR"/* \
 && chown -R ops:ops /opt/dagster/dagster_home /opt/dagster/data dbt_project \
 && chmod 0555 deploy/*.sh

USER ops:ops
EXPOSE 3000 4000
ENTRYPOINT ["/opt/dagster/app/deploy/entrypoint.sh"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions"]
