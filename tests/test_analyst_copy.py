"""The analysts' read-only copy of the DuckDB warehouse: published by the main job after its marts,
readable while another process writes the main file, the same data, swapped atomically, and a failed
publish is loud and keeps the previous copy.

DuckDB locks a file per process (and caches one database instance per path in a process), so the
writers and the readers that must stay open across a publish run in subprocesses. The main job's
own run publishing the copy is checked in tests/test_pipeline_end_to_end.py."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from duckdb_holder import Holder

from orchestration.defs.analyst_copy import ASSET_KEY, build_analyst_copy_asset
from orchestration.defs.resources import OpsLocations
from orchestration.lib.analyst_copy import (
    AnalystCopyError,
    WarehouseLocked,
    analyst_copy_path,
    connect_read_only,
    publish_analyst_copy,
)
from orchestration.lib.settings import Location

# ---------------------------------------------------------------------------------------------
# helpers


def _small_warehouse(path: Path, n: int = 100) -> Location:
    conn = duckdb.connect(str(path))
    conn.execute("create schema marts; create schema staging")
    conn.execute(f"create table marts.mart_x as select range as x_id from range({n:d})")
    # a view reading through the catalog name, as dbt writes them
    conn.execute(f"create view staging.stg_x as select * from {path.name.split('.')[0]}.marts.mart_x")
    conn.close()
    return Location.parse(str(path))


def _add_rows(warehouse: Location, n: int) -> None:
    conn = duckdb.connect(str(warehouse.path))
    conn.execute(f"insert into marts.mart_x select range + 1000000 from range({n:d})")
    conn.close()


def _count(path: Path, relation: str = "marts.mart_x") -> int:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute(f"select count(*) from {relation}").fetchone()[0]
    finally:
        conn.close()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# the publishing function


def test_the_copy_path_sits_beside_the_warehouse_and_keeps_its_catalog_name(tmp_path, monkeypatch):
    monkeypatch.delenv("OPS_ANALYST_COPY_PATH", raising=False)
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    assert analyst_copy_path(warehouse) == tmp_path / "warehouse.analyst.duckdb"
    result = publish_analyst_copy(warehouse)
    assert result.path == tmp_path / "warehouse.analyst.duckdb" and result.bytes == result.path.stat().st_size > 0
    conn = duckdb.connect(str(result.path), read_only=True)
    # the same catalog name as the main file: views naming it resolve in the copy
    assert conn.execute("select current_database()").fetchone()[0] == "warehouse"
    assert conn.execute("select count(*) from staging.stg_x").fetchone()[0] == 100
    conn.close()
    monkeypatch.setenv("OPS_ANALYST_COPY_PATH", str(tmp_path / "elsewhere" / "wh.duckdb"))
    assert analyst_copy_path(warehouse) == tmp_path / "elsewhere" / "wh.duckdb"
    assert publish_analyst_copy(warehouse).path == tmp_path / "elsewhere" / "wh.duckdb"
    assert _count(tmp_path / "elsewhere" / "wh.duckdb") == 100


def test_postgres_warehouses_publish_nothing():
    result = publish_analyst_copy(Location.parse("postgresql://ops_analyst@127.0.0.1:5432/ops_warehouse"))
    assert result.path is None and "ops_analyst" in (result.skipped or "")
    assert analyst_copy_path(Location.parse("postgresql://postgres@127.0.0.1/x")) is None


def test_the_last_committed_writes_are_in_the_copy_even_before_a_checkpoint(tmp_path):
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    conn = duckdb.connect(str(warehouse.path))
    conn.execute("pragma disable_checkpoint_on_shutdown")
    conn.execute("insert into marts.mart_x select range + 500 from range(7)")
    conn.close()
    assert Path(f"{warehouse.path}.wal").exists()  # the rows are only in the WAL
    result = publish_analyst_copy(warehouse)
    assert _count(result.path) == 107


def test_a_republish_swaps_atomically_and_is_idempotent(tmp_path):
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    copy = publish_analyst_copy(warehouse).path
    with Holder(copy, "read") as old_reader:  # an analyst's session opened on the first copy
        assert old_reader.count() == 100
        _add_rows(warehouse, 20)
        second = publish_analyst_copy(warehouse)
        assert second.path == copy
        assert old_reader.count() == 100  # still reads the copy it opened
        assert _count(copy) == 120  # a new reader sees the new one
        third = publish_analyst_copy(warehouse)  # nothing written in between: the same data again
        assert _count(copy) == 120 and third.bytes == second.bytes
        assert old_reader.count() == 100
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.analyst.duckdb", "warehouse.duckdb"]


def test_an_analyst_reads_the_copy_while_a_writer_holds_the_main_file(tmp_path):
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    copy = publish_analyst_copy(warehouse).path
    with Holder(warehouse.path, "write"):  # the hourly job, mid-transaction
        with pytest.raises(duckdb.IOException, match="Conflicting lock is held"):
            duckdb.connect(str(warehouse.path), read_only=True)
        # the analyst's way in
        conn = duckdb.connect(str(copy), read_only=True)
        assert conn.execute("select count(*) from staging.stg_x").fetchone()[0] == 100
        conn.close()
        # a reader of the main file gets one line naming the copy
        with pytest.raises(WarehouseLocked) as locked:
            connect_read_only(warehouse)
        message = str(locked.value)
        assert "\n" not in message and str(copy) in message and "read_only=True" in message
        conn = connect_read_only(warehouse, fall_back_to_copy=True)
        assert conn.execute("select count(*) from marts.mart_x").fetchone()[0] == 100
        conn.close()
        # publishing now cannot take the lock: loud, and the previous copy stays
        before = copy.stat()
        with pytest.raises(AnalystCopyError, match="Conflicting lock is held") as failed:
            publish_analyst_copy(warehouse)
        assert str(copy) in str(failed.value) and "unchanged" in str(failed.value)
        assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _leftovers(tmp_path) == []
    conn = connect_read_only(warehouse)  # the writer is gone: the main file again
    assert conn.execute("select count(*) from marts.mart_x").fetchone()[0] == 100
    conn.close()


def test_a_failed_copy_is_loud_and_keeps_the_previous_copy(tmp_path, monkeypatch):
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    copy = publish_analyst_copy(warehouse).path
    _add_rows(warehouse, 20)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", disk_full)
    with pytest.raises(AnalystCopyError, match="No space left on device"):
        publish_analyst_copy(warehouse)
    monkeypatch.undo()
    assert _count(copy) == 100 and _leftovers(tmp_path) == []
    # the target's directory cannot be created (its parent is a file)
    (tmp_path / "not_a_dir").write_text("")
    with pytest.raises(AnalystCopyError, match="not_a_dir"):
        publish_analyst_copy(warehouse, tmp_path / "not_a_dir" / "wh.duckdb")
    with pytest.raises(AnalystCopyError, match="warehouse file itself"):
        publish_analyst_copy(warehouse, warehouse.path)
    with pytest.raises(AnalystCopyError, match="no warehouse file"):
        publish_analyst_copy(Location.parse(str(tmp_path / "missing.duckdb")))
    assert not (tmp_path / "missing.duckdb").exists()


def test_a_read_only_directory_is_reported_and_keeps_the_previous_copy(tmp_path, monkeypatch):
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    target = tmp_path / "analysts" / "warehouse.duckdb"
    publish_analyst_copy(warehouse, target)
    _add_rows(warehouse, 20)
    target.parent.chmod(0o555)
    if os.geteuid() == 0:  # root writes into a 0555 directory: refuse its writes there as the kernel would for others
        import builtins

        import orchestration.lib.analyst_copy as module

        real_open = builtins.open

        def open_denied_in_target_dir(file, mode="r", *args, **kwargs):
            if "w" in mode and Path(file).parent == target.parent:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(module, "open", open_denied_in_target_dir, raising=False)
    try:
        with pytest.raises(AnalystCopyError, match="Permission denied"):
            publish_analyst_copy(warehouse, target)
    finally:
        target.parent.chmod(0o755)
    assert _count(target) == 100


# ---------------------------------------------------------------------------------------------
# the Dagster wiring


def test_the_copy_asset_is_the_main_jobs_last_asset():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def("extract_and_build")
    in_job = job.asset_layer.executable_asset_keys
    assert ASSET_KEY in in_job
    upstream = set(graph.upstream_key_iterator(ASSET_KEY))
    # every other asset the job builds is upstream of the copy: it runs after all of them
    assert in_job - {ASSET_KEY} <= upstream, sorted(k.to_user_string() for k in in_job - {ASSET_KEY} - upstream)
    assert not graph.get(ASSET_KEY).child_keys


def _materialize_copy_alone(warehouse_url: str) -> dg.ExecuteInProcessResult:
    asset = build_analyst_copy_asset(after=[])
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize([asset], instance=instance, raise_on_error=False,
                              resources={"ops_locations": OpsLocations(source_url="unused.duckdb",
                                                                       warehouse_url=warehouse_url)})


def test_a_failed_publish_fails_the_step_with_the_reason(tmp_path, monkeypatch):
    warehouse = _small_warehouse(tmp_path / "warehouse.duckdb")
    (tmp_path / "not_a_dir").write_text("")
    monkeypatch.setenv("OPS_ANALYST_COPY_PATH", str(tmp_path / "not_a_dir" / "wh.duckdb"))
    result = _materialize_copy_alone(str(warehouse.path))
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.step_failure_data.user_failure_data.description
    assert "could not publish the analyst copy" in description and "not_a_dir" in description


def test_the_asset_is_a_no_op_on_postgres():
    result = _materialize_copy_alone("postgresql://postgres@127.0.0.1:5432/ops_warehouse_never_opened")
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert "ops_analyst" in event.materialization.metadata["skipped"].value
