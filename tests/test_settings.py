"""Locations from the environment: parsing, secrets never shown, dbt's view of the warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.defs.extract.assets import ExtractConfig
from orchestration.defs.transform.dbt_assets import dbt_build_args
from orchestration.lib.cli import main
from orchestration.lib.dbt_env import dbt_env, dbt_target
from orchestration.lib.settings import Location


def test_locations_parse_dsns_and_paths(tmp_path):
    assert Location.parse("postgresql://u:pw@db:5433/ops").kind == "postgres"
    assert Location.parse("host=db dbname=ops user=u").kind == "postgres"
    duck = Location.parse(f"duckdb://{tmp_path}/w.duckdb")
    assert duck.kind == "duckdb" and duck.path == Path(tmp_path) / "w.duckdb"
    with pytest.raises(ValueError):
        Location.parse("  ")


def test_passwords_are_never_shown():
    assert Location.parse("postgresql://reader:s3cret@db:5432/bot").redacted() == "postgresql://reader:***@db:5432/bot"
    assert "s3cret" not in Location.parse("host=db password=s3cret dbname=bot").redacted()


def test_dbt_gets_the_warehouse_from_the_one_setting(tmp_path):
    pg = Location.parse("postgresql://wh:p%40ss@warehouse:6543/ops")
    assert dbt_target(pg) == "postgres"
    assert dbt_env(pg) == {"OPS_WAREHOUSE_PG_HOST": "warehouse", "OPS_WAREHOUSE_PG_PORT": "6543",
                           "OPS_WAREHOUSE_PG_USER": "wh", "OPS_WAREHOUSE_PG_PASSWORD": "p@ss",
                           "OPS_WAREHOUSE_PG_DBNAME": "ops"}
    duck = Location.parse(str(tmp_path / "w.duckdb"))
    assert dbt_target(duck) == "duckdb"
    assert dbt_env(duck) == {"OPS_WAREHOUSE_DUCKDB_PATH": str(tmp_path / "w.duckdb")}


def test_dbt_build_args():
    assert dbt_build_args() == ["build"]
    assert dbt_build_args("2026-11-01T00:00:00+00:00", True) == [
        "build", "--vars", '{"as_of": "2026-11-01T00:00:00+00:00"}', "--full-refresh"]


def test_extract_run_config_is_validated():
    assert ExtractConfig().to_request().mode == "incremental"
    backfill = ExtractConfig(mode="backfill", backfill_start="2026-11-01", backfill_end="2026-11-02").to_request()
    assert backfill.backfill_start.tzinfo is not None
    with pytest.raises(ValueError, match="mode must be"):
        ExtractConfig(mode="everything").to_request()
    with pytest.raises(ValueError, match="start must be before"):
        ExtractConfig(mode="backfill", backfill_start="2026-11-02", backfill_end="2026-11-01").to_request()
    with pytest.raises(ValueError, match="needs both"):
        ExtractConfig(mode="backfill", backfill_start="2026-11-02").to_request()


def test_cli_reports_a_missing_source_clearly(tmp_path, capsys):
    code = main(["extract", "--source", str(tmp_path / "nope.duckdb"), "--warehouse", str(tmp_path / "w.duckdb")])
    assert code == 2
    assert "source DuckDB file not found" in capsys.readouterr().err
