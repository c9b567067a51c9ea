"""The one resource the pipeline needs: where the source and the warehouse are."""

from __future__ import annotations

import os

import dagster as dg

from orchestration.lib import settings
from orchestration.lib.settings import Location


class OpsLocations(dg.ConfigurableResource):
    """Source (the bot's operational database) and warehouse, each a PostgreSQL DSN or a DuckDB
    file. Set from OPS_SOURCE_URL / OPS_WAREHOUSE_URL; DSNs stay environment references in the
    Dagster UI, never values."""

    source_url: str
    warehouse_url: str

    @property
    def source(self) -> Location:
        return Location.parse(self.source_url)

    @property
    def warehouse(self) -> Location:
        return Location.parse(self.warehouse_url)


def _from_env(var: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(var) if os.environ.get(var) else default


def ops_locations_from_env() -> OpsLocations:
    return OpsLocations(
        source_url=_from_env("OPS_SOURCE_URL", str(settings.source_location().path)),
        warehouse_url=_from_env("OPS_WAREHOUSE_URL", str(settings.warehouse_location().path)),
    )
