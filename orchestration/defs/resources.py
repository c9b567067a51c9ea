"""The one resource the pipeline needs: where the source and the warehouse are."""

from __future__ import annotations

import os

import dagster as dg

from orchestration.lib import settings
from orchestration.lib.settings import Location


class OpsLocations(dg.ConfigurableResource):
    """Source (the bot's operational database) and warehouse, each a PostgreSQL DSN or a DuckDB
    file. Set from OPS_SOURCE_URL / OPS_WAREHOUSE_URL; DSNs stay environment references in the
    Dagster UI and in the run's stored configuration, never values (a password is read from the
    environment in the step's process and masked in every message)."""

    source_url: str
    warehouse_url: str

    @property
    def source(self) -> Location:
        return Location.parse(self.source_url, "OPS_SOURCE_URL")

    @property
    def warehouse(self) -> Location:
        return Location.parse(self.warehouse_url, "OPS_WAREHOUSE_URL")


def _from_env(var: str, default) -> str | dg.EnvVar:
    """An environment reference when the variable is set (its value never enters Dagster's
    storage), else the default DuckDB file's path."""
    return dg.EnvVar(var) if os.environ.get(var) else str(default().path)


def ops_locations_from_env() -> OpsLocations:
    return OpsLocations(
        source_url=_from_env("OPS_SOURCE_URL", settings.source_location),
        warehouse_url=_from_env("OPS_WAREHOUSE_URL", settings.warehouse_location),
    )
