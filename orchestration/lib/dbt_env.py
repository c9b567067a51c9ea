"""Which dbt target and environment a warehouse location maps to.

The dbt profile (dbt_project/profiles.yml) reads only environment variables; this turns the
project's one warehouse setting (OPS_WAREHOUSE_URL) into them, so there is one place to configure.
On DuckDB it also passes the memory limit and the spill folder (OPS_DUCKDB_MEMORY_LIMIT,
OPS_DUCKDB_TEMP_DIRECTORY: settings.duckdb_memory_limit / duckdb_temp_directory).

Every libpq parameter of the DSN reaches dbt-postgres (psycopg2, on libpq): the ones its profile
has a field for (host, port, user, password, dbname, sslmode, sslcert, sslkey, sslrootcert,
connect_timeout, keepalives_idle, application_name) through ``OPS_WAREHOUSE_PG_*`` variables
read by profiles.yml; the others through libpq's own environment variables (``options`` as
PGOPTIONS — it carries the statement and lock timeouts —, ``sslcrl`` as PGSSLCRL, …), which
libpq reads for what dbt leaves unset. A parameter with neither is refused with a clear message,
never dropped.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from psycopg import pq

from orchestration.lib.settings import APPLICATION_NAME, Location, duckdb_memory_limit, duckdb_temp_directory

# DSN parameters with a dbt-postgres profile field (profiles.yml reads OPS_WAREHOUSE_PG_<NAME>), and
# the value when neither the DSN nor libpq's variable gives one. Every field is always set, so a
# process that runs dbt for one warehouse after another keeps nothing of the first.
PROFILE_FIELDS = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": "", "dbname": "postgres",
                  "sslmode": "", "sslcert": "", "sslkey": "", "sslrootcert": "", "connect_timeout": "10",
                  "keepalives_idle": "0", "application_name": f"{APPLICATION_NAME}_dbt"}


def dbt_target(warehouse: Location) -> str:
    return "postgres" if warehouse.is_postgres else "duckdb"


def _libpq_env_vars() -> dict[str, str]:
    """libpq parameter -> the environment variable libpq reads for it (PQconndefaults)."""
    return {o.keyword.decode(): o.envvar.decode() for o in pq.Conninfo.get_defaults() if o.envvar}


def dbt_env(warehouse: Location) -> dict[str, str]:
    if not warehouse.is_postgres:  # the memory limit and spill folder every DuckDB connection gets
        return {"OPS_WAREHOUSE_DUCKDB_PATH": str(warehouse.path), "OPS_DUCKDB_MEMORY_LIMIT": duckdb_memory_limit(),
                "OPS_DUCKDB_TEMP_DIRECTORY": str(duckdb_temp_directory(warehouse.path))}
    params = warehouse.session_params(application_name=f"{APPLICATION_NAME}_dbt")
    libpq_env = _libpq_env_vars()
    env: dict[str, str] = {}
    for key, default in PROFILE_FIELDS.items():
        # a field dbt sets wins over libpq's variable: take the variable's value, as libpq would
        value = params.pop(key, None) or (os.environ.get(libpq_env[key], "") if key in libpq_env else "")
        env[f"OPS_WAREHOUSE_PG_{key.upper()}"] = value or default
    if "," in env.get("OPS_WAREHOUSE_PG_PORT", ""):
        raise ValueError("OPS_WAREHOUSE_URL: dbt-postgres takes one port, not a list (give one host and port)")
    for key, value in params.items():
        if key not in libpq_env:
            raise ValueError(f"OPS_WAREHOUSE_URL: the libpq parameter {key} cannot reach dbt-postgres (no profile "
                             f"field, no libpq environment variable): remove it, or set it in a service file "
                             f"(PGSERVICEFILE) named by service=")
        env[libpq_env[key]] = value
    return env


@contextmanager
def dbt_environ(warehouse: Location) -> Iterator[None]:
    """os.environ with ``dbt_env(warehouse)`` for the block only (dagster-dbt copies os.environ
    when it starts dbt), restored after: left in place, the PGOPTIONS it sets would trail every
    later session's own options in this process and override their timeouts."""
    env = dbt_env(warehouse)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
