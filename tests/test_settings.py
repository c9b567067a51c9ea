"""Locations from the environment: parsing, secrets never shown, dbt's view of the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from orchestration.defs.extract.assets import ExtractConfig
from orchestration.defs.transform.dbt_assets import dbt_build_args
from orchestration.lib.cli import main
from orchestration.lib.dbt_env import dbt_env, dbt_environ, dbt_target
from orchestration.lib.settings import Location


def test_locations_parse_dsns_and_paths(tmp_path):
    assert Location.parse("postgresql://u:pw@db:5433/ops").kind == "postgres"
    assert Location.parse("host=db dbname=ops user=u").kind == "postgres"
    assert Location.parse("dbname=ops").kind == "postgres"
    duck = Location.parse(f"duckdb://{tmp_path}/w.duckdb")
    assert duck.kind == "duckdb" and duck.path == Path(tmp_path) / "w.duckdb"
    with pytest.raises(ValueError):
        Location.parse("  ")


@pytest.mark.parametrize("value, message", [
    ("mysql://x@y/z", "unknown scheme mysql://"),
    ("http://example.com/warehouse", "unknown scheme http://"),
    ("duckdb://", "without a file path"),
    ("postgresql://db/ops?sslmod=require", 'invalid URI query parameter: "sslmod"'),
    ("host=db passwrd=s3cret-typo", 'invalid connection option "passwrd"'),
    ("host=db password='unterminated", "unterminated quoted string"),
])
def test_settings_refuse_nonsense(value, message):
    with pytest.raises(ValueError, match=message) as refused:
        Location.parse(value, "OPS_WAREHOUSE_URL")
    assert str(refused.value).startswith("OPS_WAREHOUSE_URL: ") and "\n" not in str(refused.value)
    assert "s3cret" not in str(refused.value) and "unterminated'" not in str(refused.value)


def test_a_duckdb_file_needs_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Location.parse(str(tmp_path / "no" / "such" / "w.duckdb"))
    assert not (tmp_path / "no").exists()
    with pytest.raises(ValueError, match="is a folder"):
        Location.parse(str(tmp_path))
    from orchestration.lib.settings import DATA_DIR

    assert Location.parse(str(DATA_DIR / "warehouse.duckdb")).path == DATA_DIR.resolve() / "warehouse.duckdb"


def test_every_libpq_parameter_reaches_psycopg_and_adbc():
    url = Location.parse("postgresql://u:p%40ss@db:6543/ops?sslmode=verify-full&sslrootcert=%2Fca%20dir%2Fca.pem"
                         "&sslcert=%2Fc.crt&sslkey=%2Fc.key&options=-c%20search_path%3Dx&application_name=me"
                         "&password=over")
    kv = Location.parse("host=/run/pg port=6543 user=u password='a b\\'c' dbname=ops sslmode=verify-full "
                        "sslrootcert='/ca dir/ca.pem' options='-c search_path=x'")
    for location, expected in ((url, {"host": "db", "password": "over", "application_name": "me",
                                      "sslcert": "/c.crt", "sslkey": "/c.key"}),
                               (kv, {"host": "/run/pg", "password": "a b'c", "application_name": "ops_warehouse"})):
        expected = {**expected, "port": "6543", "user": "u", "dbname": "ops", "sslmode": "verify-full",
                    "sslrootcert": "/ca dir/ca.pem", "connect_timeout": "10",
                    "options": "-c statement_timeout=1800000 -c lock_timeout=60000 -c jit=off -c search_path=x"}
        # psycopg: a key=value conninfo; ADBC: a URI with every parameter in its query string
        assert conninfo_to_dict(location.conninfo()) == expected
        assert conninfo_to_dict(location.uri()) == expected


def test_passwords_are_never_shown():
    assert Location.parse("postgresql://reader:s3cret@db:5432/bot").redacted() == "postgresql://reader:***@db:5432/bot"
    assert "s3cret" not in Location.parse("host=db password=s3cret dbname=bot").redacted()
    assert Location.parse("postgresql://db/bot?password=s3cret").redacted() == "postgresql://db/bot?password=***"
    assert Location.parse("host=db password = 'a s3cret' dbname=bot").redacted() == "host=db password = *** dbname=bot"
    assert "s3cret" not in repr(Location.parse("postgresql://r:s3cret@db/bot"))


def test_dbt_gets_the_warehouse_from_the_one_setting(tmp_path):
    pg = Location.parse("postgresql://wh:p%40ss@warehouse:6543/ops")
    assert dbt_target(pg) == "postgres"
    env = dbt_env(pg)
    assert {k: v for k, v in env.items() if v} == {
        "OPS_WAREHOUSE_PG_HOST": "warehouse", "OPS_WAREHOUSE_PG_PORT": "6543", "OPS_WAREHOUSE_PG_USER": "wh",
        "OPS_WAREHOUSE_PG_PASSWORD": "p@ss", "OPS_WAREHOUSE_PG_DBNAME": "ops", "OPS_WAREHOUSE_PG_CONNECT_TIMEOUT": "10",
        "OPS_WAREHOUSE_PG_KEEPALIVES_IDLE": "0", "OPS_WAREHOUSE_PG_APPLICATION_NAME": "ops_warehouse_dbt",
        "PGOPTIONS": "-c statement_timeout=1800000 -c lock_timeout=60000 -c jit=off"}
    # every profile field is set (empty: unset), so nothing of an earlier warehouse stays in a process
    assert env["OPS_WAREHOUSE_PG_SSLMODE"] == env["OPS_WAREHOUSE_PG_SSLROOTCERT"] == ""
    duck = Location.parse(str(tmp_path / "w.duckdb"))
    assert dbt_target(duck) == "duckdb"
    assert dbt_env(duck) == {"OPS_WAREHOUSE_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
                             "OPS_DUCKDB_MEMORY_LIMIT": "1GB",
                             "OPS_DUCKDB_TEMP_DIRECTORY": str(tmp_path / "w.duckdb.tmp")}


def test_every_duckdb_connection_gets_the_memory_limit_and_a_spill_folder(tmp_path, monkeypatch):
    from orchestration.lib.db import duckdb_connect, duckdb_memory_connect
    from orchestration.lib.extract.engine import _warehouse_connect

    def setting(conn, name):
        return conn.execute(f"select current_setting('{name}')").fetchall()[0][0]

    monkeypatch.delenv("OPS_DUCKDB_MEMORY_LIMIT", raising=False)
    monkeypatch.delenv("OPS_EXTRACT_DUCKDB_MEMORY_LIMIT", raising=False)
    monkeypatch.delenv("OPS_DUCKDB_TEMP_DIRECTORY", raising=False)
    wh = Location.parse(str(tmp_path / "w.duckdb"))
    conn = duckdb_connect(wh)
    assert setting(conn, "memory_limit") == "953.6 MiB"  # 1GB (DuckDB's own default: 80 % of RAM)
    assert setting(conn, "temp_directory") == str(tmp_path / "w.duckdb.tmp")
    conn.close()
    conn = _warehouse_connect(wh)  # an extract's: its own, smaller limit
    assert setting(conn, "memory_limit") == "183.1 MiB"  # 192MB
    conn.close()
    monkeypatch.setenv("OPS_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("OPS_DUCKDB_TEMP_DIRECTORY", str(tmp_path / "spill"))
    conn = duckdb_connect(wh, read_only=True)
    assert setting(conn, "memory_limit") == "286.1 MiB"
    assert setting(conn, "temp_directory") == str(tmp_path / "spill")
    conn.close()
    memory = duckdb_memory_connect()
    assert setting(memory, "memory_limit") == "286.1 MiB"
    assert setting(memory, "temp_directory") == str(tmp_path / "spill")
    memory.close()
    assert dbt_env(wh)["OPS_DUCKDB_MEMORY_LIMIT"] == "300MB"
    for bad in ("lots", "0MB", "-1GB", "1 PB"):
        monkeypatch.setenv("OPS_DUCKDB_MEMORY_LIMIT", bad)
        with pytest.raises(ValueError, match="OPS_DUCKDB_MEMORY_LIMIT must be a size"):
            duckdb_connect(wh)


def test_dbt_environment_is_set_for_the_dbt_process_only(monkeypatch):
    """Left in os.environ, the PGOPTIONS of one dbt run would trail the options of every later
    session of the process and override its timeouts (seen as a 30 min statement_timeout)."""
    monkeypatch.delenv("PGOPTIONS", raising=False)
    monkeypatch.setenv("OPS_WAREHOUSE_PG_HOST", "earlier")
    pg = Location.parse("postgresql://wh@warehouse:6543/ops")
    with dbt_environ(pg):
        assert os.environ["PGOPTIONS"] == "-c statement_timeout=1800000 -c lock_timeout=60000 -c jit=off"
        assert os.environ["OPS_WAREHOUSE_PG_HOST"] == "warehouse"
    assert "PGOPTIONS" not in os.environ and os.environ["OPS_WAREHOUSE_PG_HOST"] == "earlier"
    monkeypatch.setenv("OPS_PG_STATEMENT_TIMEOUT_SECONDS", "2.5")
    assert pg.session_params()["options"].startswith("-c statement_timeout=2500 ")
    assert "1800000" not in pg.session_params()["options"]


def test_dbt_gets_tls_sockets_options_and_the_rest():
    env = dbt_env(Location.parse("host=/run/pg dbname=ops sslmode=verify-full sslrootcert=/ca.pem sslcert=/c.crt "
                                 "sslkey=/c.key options='-c search_path=x' sslcrl=/crl.pem application_name=me "
                                 "target_session_attrs=read-write"))
    assert env["OPS_WAREHOUSE_PG_HOST"] == "/run/pg" and env["OPS_WAREHOUSE_PG_SSLMODE"] == "verify-full"
    assert (env["OPS_WAREHOUSE_PG_SSLROOTCERT"], env["OPS_WAREHOUSE_PG_SSLCERT"], env["OPS_WAREHOUSE_PG_SSLKEY"]) == (
        "/ca.pem", "/c.crt", "/c.key")
    assert env["OPS_WAREHOUSE_PG_APPLICATION_NAME"] == "me"
    # no profile field: libpq's own variables, read by dbt-postgres' psycopg2 for what dbt leaves unset
    assert env["PGOPTIONS"].endswith("-c search_path=x") and env["PGSSLCRL"] == "/crl.pem"
    assert env["PGTARGETSESSIONATTRS"] == "read-write"
    with pytest.raises(ValueError, match="keepalives_interval cannot reach dbt-postgres"):
        dbt_env(Location.parse("host=db keepalives_interval=5"))
    with pytest.raises(ValueError, match="one port"):
        dbt_env(Location.parse("postgresql://a:5432,b:5433/ops"))


def test_dbt_build_args():
    no_unit_tests = ["--exclude-resource-type", "unit_test"]  # CI runs them, not the hourly build
    assert dbt_build_args() == ["build", *no_unit_tests]
    assert dbt_build_args(unit_tests=True) == ["build"]
    assert dbt_build_args("2026-11-01T00:00:00+00:00", True) == [
        "build", *no_unit_tests, "--vars", '{"as_of": "2026-11-01T00:00:00+00:00"}', "--full-refresh"]


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


# ---------------------------------------------------------------------------------------------
# the CLI: settings errors are one line on stderr, a non-zero exit, no traceback

CLI = Path(sys.executable).parent / "ops-warehouse"


def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    return subprocess.run([str(CLI), *args], env={**base, "OPS_DATA_DIR": str(tmp_path / "data"), **env},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess, *parts: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", [["alerts", "status"], ["extract"], ["alerts", "run", "--no-deliver"]])
def test_cli_refuses_an_unknown_scheme(tmp_path, command):
    proc = _cli(command, tmp_path, OPS_WAREHOUSE_URL="mysql://x:s3cret@y/z", OPS_SOURCE_URL=str(tmp_path / "s.duckdb"))
    line = _one_line_error(proc, f"ops-warehouse {command[0]}: error: OPS_WAREHOUSE_URL: unknown scheme mysql://")
    assert "s3cret" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folders made of the URL, no data folder


def test_cli_refuses_a_duckdb_file_in_a_missing_folder(tmp_path):
    proc = _cli(["extract"], tmp_path, OPS_WAREHOUSE_URL=str(tmp_path / "typo" / "w.duckdb"),
                OPS_SOURCE_URL=str(tmp_path / "s.duckdb"))
    _one_line_error(proc, "OPS_WAREHOUSE_URL", "typo", "does not exist")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", [["alerts", "status"], ["alerts", "run", "--no-deliver"], ["alerts", "silences"]])
def test_read_only_commands_do_not_create_a_missing_warehouse(tmp_path, command):
    warehouse = tmp_path / "w.duckdb"
    proc = _cli(command, tmp_path, OPS_WAREHOUSE_URL=str(warehouse))
    _one_line_error(proc, "error:", str(warehouse), "does not exist")
    assert not warehouse.exists()


def test_read_query_on_a_missing_duckdb_file_is_one_line(tmp_path):
    from orchestration.lib.db import read_query

    with pytest.raises(FileNotFoundError, match="does not exist") as missing:
        read_query(Location.parse(str(tmp_path / "w.duckdb")), "select 1")
    assert "\n" not in str(missing.value) and not (tmp_path / "w.duckdb").exists()
