"""Which dbt target and environment a warehouse location maps to.

The dbt profile (dbt_project/profiles.yml) reads only environment variables; this turns the
project's one warehouse setting (OPS_WAREHOUSE_URL) into them, so there is one place to configure.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from orchestration.lib.settings import Location


def dbt_target(warehouse: Location) -> str:
    return "postgres" if warehouse.is_postgres else "duckdb"


def dbt_env(warehouse: Location) -> dict[str, str]:
    if not warehouse.is_postgres:
        return {"OPS_WAREHOUSE_DUCKDB_PATH": str(warehouse.path)}
    assert warehouse.dsn is not None
    if "://" in warehouse.dsn:
        parts = urlsplit(warehouse.dsn)
        values = {
            "host": parts.hostname or "127.0.0.1",
            "port": str(parts.port or 5432),
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
            "dbname": parts.path.lstrip("/") or "postgres",
        }
    else:  # key=value form
        kv = dict(p.split("=", 1) for p in warehouse.dsn.split())
        values = {"host": kv.get("host", "127.0.0.1"), "port": kv.get("port", "5432"),
                  "user": kv.get("user", "postgres"), "password": kv.get("password", ""),
                  "dbname": kv.get("dbname", "postgres")}
    return {f"OPS_WAREHOUSE_PG_{k.upper()}": v for k, v in values.items()}
