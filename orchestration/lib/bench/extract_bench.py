"""Extraction throughput next to plain ``psql \\copy``, measured in the same run.

For N ``system_events`` rows in a PostgreSQL source:
- into DuckDB:      our extract (ADBC batches landed in raw, fixed up, committed)  vs
                    ``psql \\copy (…) to FILE``;
- into PostgreSQL:  our extract (a first load: COPY straight into the empty raw table, indexes
                    built after; later runs go through a stage and upsert)  vs
                    ``psql \\copy (…) to stdout | psql \\copy target from stdin`` into a table of
                    the same definition as ``raw.system_events`` (same primary key and index),
                    since keeping keys unique is part of the job.
Both sides select the same columns (jsonb printed as text). Figures are relative: client and
server share this machine's cores.

Each of our runs happens in a fresh child process (multiprocessing, spawn), so its peak RSS
(``VmHWM``, the kernel's high-water mark of resident memory) is that run's own: the interpreter,
the imports, the drivers, DuckDB's buffer pool and whatever a read held at once. The time is taken
inside the child around the run, so the rows/s figures leave the child's start-up out.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from orchestration.lib.bench import write_figures
from orchestration.lib.extract import readers
from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.extract.raw_schema import TABLES, raw_table_ddl
from orchestration.lib.extract.source import SourceRelation, inspect_columns, plan_read
from orchestration.lib.settings import Location
from orchestration.lib.source.schema import create_source_schema

FILL_SQL = """
insert into system_events (event_type, event_data, metadata, severity, message, created_at, "timestamp")
select (array['POST_FAILED','POSTING_QUEUE_TICK','error_browser_queue_timeout','posting_job_execution_failed',
              'EXECUTOR_DAEMON_TICK','POSTING_QUEUE_BLOCKED'])[1 + i % 6],
       case when i % 10 <> 0 then jsonb_build_object(
         'decision_id', md5(i::text), 'error', 'page.goto: Timeout ' || (i % 60000) || 'ms exceeded',
         'duration_ms', i % 5000, 'tweet_id', (1800000000000000000 + i)::text) end,
       case when i % 10 = 0 then jsonb_build_object('reason', 'CIRCUIT_BREAKER', 'queue_len', i % 17) end,
       (array['info','warning','error','critical',null,'notice'])[1 + i % 6],
       'posting attempt ' || i || ' failed after ' || (i % 90) || 's',
       ts, ts
from (select i, now() - (i * interval '2 seconds') as ts from generate_series(1, %s) i) g
"""


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


def _psql(dsn: str, command: str) -> list[str]:
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", command]


def _peak_rss_bytes() -> int:
    """This process's peak resident set size so far (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_extract(source: str, warehouse: str, mode: str) -> dict:
    """One extract_table run of system_events, in this (child) process."""
    t = time.perf_counter()
    result = extract_table(Location.parse(source), Location.parse(warehouse), "system_events",
                           ExtractRequest(mode=mode))  # type: ignore[arg-type]
    return {"seconds": time.perf_counter() - t, "peak_rss": _peak_rss_bytes(),
            "rows_inserted": result.rows_inserted, "rows_read": result.rows_read}


def _child_bare_adbc(source: str, bare_path: str) -> dict:
    """The ceiling of the DuckDB path: ADBC batches streamed into a bare table, nothing else."""
    from orchestration.lib.db import duckdb_connect

    spec = TABLES["system_events"]
    src = Location.parse(source)
    session = readers.PostgresArrowSession(src)
    relation = SourceRelation.for_spec(spec)
    plan = plan_read(spec, relation, inspect_columns(session.rows, relation, True), True)
    select = (f"select {', '.join(f'{plan.value(c)} as {chr(34)}{c}{chr(34)}' for c in spec.column_names)} "
              f"from {relation.ref(True)}")
    bare = duckdb_connect(Location.parse(bare_path))
    bare.execute("create table bare (" + ", ".join(f'"{c.name}" {c.type}' for c in spec.columns) + ")")
    t = time.perf_counter()
    session.stream_into_duckdb(bare, select, "insert into bare select * from {relation}", None)
    seconds = time.perf_counter() - t
    session.close()
    bare.close()
    return {"seconds": seconds, "peak_rss": _peak_rss_bytes()}


def _child_idle() -> dict:
    """A child that imported what the others import and did nothing: the floor of the RSS figures."""
    return {"seconds": 0.0, "peak_rss": _peak_rss_bytes()}


def _in_child(fn, *args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def run_extract_bench(rows: int, admin_dsn: str, workdir: Path) -> dict:
    suffix = uuid.uuid4().hex[:8]
    src_db, wh_db, base_db = f"ops_bench_src_{suffix}", f"ops_bench_wh_{suffix}", f"ops_bench_base_{suffix}"
    admin = psycopg.connect(admin_dsn, autocommit=True)
    for db in (src_db, wh_db, base_db):
        admin.execute(f"create database {db}")
    try:
        source = Location.parse(_dsn_for(admin_dsn, src_db))
        create_source_schema(source)
        with psycopg.connect(source.dsn, autocommit=True) as conn:
            conn.execute(FILL_SQL.replace("%s", str(int(rows))))
            conn.execute("vacuum analyze system_events")

        spec = TABLES["system_events"]
        session = readers.PostgresArrowSession(source)
        relation = SourceRelation.for_spec(spec)
        plan = plan_read(spec, relation, inspect_columns(session.rows, relation, True), True)
        # the baselines copy the same columns (jsonb printed as text), without our row hash
        select = (f"select {', '.join(f'{plan.value(c)} as {chr(34)}{c}{chr(34)}' for c in spec.column_names)} "
                  f"from {relation.ref(True)}")

        figures: dict = {"rows": rows}
        copy_file = workdir / "system_events.copy"
        t = time.perf_counter()
        subprocess.run(_psql(source.dsn, f"\\copy ({select}) to '{copy_file}'"), check=True)
        figures["psql_copy_to_file_s"] = time.perf_counter() - t

        figures["child_idle_peak_rss_mb"] = _in_child(_child_idle)["peak_rss"] / 2**20
        session.close()

        bare = _in_child(_child_bare_adbc, source.dsn, str(workdir / "bare.duckdb"))
        figures["adbc_stream_to_bare_duckdb_table_s"] = bare["seconds"]
        figures["adbc_stream_to_bare_duckdb_table_peak_rss_mb"] = bare["peak_rss"] / 2**20

        duck = str(workdir / "bench_warehouse.duckdb")
        run = _in_child(_child_extract, source.dsn, duck, "incremental")
        figures["extract_to_duckdb_s"] = run["seconds"]
        figures["extract_to_duckdb_peak_rss_mb"] = run["peak_rss"] / 2**20
        assert run["rows_inserted"] == rows, run

        base_dsn = _dsn_for(admin_dsn, base_db)
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute("create schema raw")
            for stmt in raw_table_ddl(spec, postgres=True):
                conn.execute(stmt)
        # _loaded_at is not null in raw: the baseline fills it by a column default
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute("alter table raw.system_events alter column _loaded_at set default now()")
        load = "\\copy raw.system_events (" + ", ".join(f'"{c}"' for c in spec.column_names) + ") from stdin"
        t = time.perf_counter()
        pipe = subprocess.Popen(_psql(source.dsn, f"\\copy ({select}) to stdout"), stdout=subprocess.PIPE)
        subprocess.run(_psql(base_dsn, load), stdin=pipe.stdout, check=True)
        pipe.wait()
        figures["psql_copy_pipe_s"] = time.perf_counter() - t

        pg_wh = _dsn_for(admin_dsn, wh_db)
        run = _in_child(_child_extract, source.dsn, pg_wh, "incremental")
        figures["extract_to_postgres_s"] = run["seconds"]
        figures["extract_to_postgres_peak_rss_mb"] = run["peak_rss"] / 2**20
        assert run["rows_inserted"] == rows, run

        again = _in_child(_child_extract, source.dsn, pg_wh, "incremental")
        figures["incremental_rerun_postgres_s"] = again["seconds"]
        figures["incremental_rerun_rows_read"] = again["rows_read"]

        # steady state: every row re-read into a loaded table, all unchanged (the merge paths)
        for name, wh in (("duckdb", duck), ("postgres", pg_wh)):
            try:
                run = _in_child(_child_extract, source.dsn, wh, "full_refresh")
            except Exception as exc:  # recorded, so the first loads' figures are still printed
                figures[f"full_refresh_{name}_error"] = " ".join(str(exc).split())[:300]
                continue
            figures[f"full_refresh_{name}_s"] = run["seconds"]
            figures[f"full_refresh_{name}_peak_rss_mb"] = run["peak_rss"] / 2**20
        return _with_rates(figures)
    finally:
        for db in (src_db, wh_db, base_db):
            admin.execute(f"drop database if exists {db} with (force)")
        admin.close()


def _with_rates(f: dict) -> dict:
    rows = f["rows"]
    for key in list(f):
        if key.endswith("_s") and key != "incremental_rerun_postgres_s":  # rates of whole-table runs
            f[key[: -len("_s")] + "_rows_per_s"] = rows / f[key]
    f["ratio_duckdb_vs_copy_to_file"] = f["psql_copy_to_file_s"] / f["extract_to_duckdb_s"]
    f["ratio_bare_adbc_vs_copy_to_file"] = f["psql_copy_to_file_s"] / f["adbc_stream_to_bare_duckdb_table_s"]
    f["ratio_postgres_vs_copy_pipe"] = f["psql_copy_pipe_s"] / f["extract_to_postgres_s"]
    return f


def print_table(f: dict) -> None:
    print(f"\nextract benchmark: {f['rows']:,} system_events rows from PostgreSQL")
    print(f"{'target':12s} {'ours rows/s':>14s} {'peak RSS':>9s} {'baseline':38s} {'baseline rows/s':>16s} "
          f"{'ratio':>7s}")
    to_file, pipe = "psql \\copy to a file", "psql \\copy out | \\copy in (same table)"
    same_copy = "the same \\copy"

    def mb(key: str) -> str:
        return f"{f[key]:,.0f} MB" if key in f else "-"

    print(f"{'duckdb':12s} {f['extract_to_duckdb_rows_per_s']:>14,.0f} {mb('extract_to_duckdb_peak_rss_mb'):>9s} "
          f"{to_file:38s} {f['psql_copy_to_file_rows_per_s']:>16,.0f} {f['ratio_duckdb_vs_copy_to_file']:>7.2f}")
    print(f"{'(ceiling)':12s} {f['adbc_stream_to_bare_duckdb_table_rows_per_s']:>14,.0f} "
          f"{mb('adbc_stream_to_bare_duckdb_table_peak_rss_mb'):>9s} "
          f"{'ADBC into a bare DuckDB table, vs':38s} {same_copy:>16s} "
          f"{f['ratio_bare_adbc_vs_copy_to_file']:>7.2f}")
    print(f"{'postgres':12s} {f['extract_to_postgres_rows_per_s']:>14,.0f} "
          f"{mb('extract_to_postgres_peak_rss_mb'):>9s} {pipe:38s} "
          f"{f['psql_copy_pipe_rows_per_s']:>16,.0f} {f['ratio_postgres_vs_copy_pipe']:>7.2f}")
    def refresh(name: str) -> str:
        if f"full_refresh_{name}_error" in f:
            return f"FAILED ({f[f'full_refresh_{name}_error']})"
        return (f"{f[f'full_refresh_{name}_rows_per_s']:,.0f} rows/s "
                f"(peak RSS {mb(f'full_refresh_{name}_peak_rss_mb')})")

    print(f"full refresh of the loaded table (all rows re-read, none changed): duckdb {refresh('duckdb')}, "
          f"postgres {refresh('postgres')}")
    print(f"incremental rerun (overlap window only): {f['incremental_rerun_rows_read']:,} rows re-read "
          f"in {f['incremental_rerun_postgres_s']:.2f}s")
    print(f"peak RSS: each run in its own child process (VmHWM); a child that only imported the modules: "
          f"{mb('child_idle_peak_rss_mb')}")


def main(rows: int, json_path: str | None, admin_dsn: str | None) -> int:
    admin_dsn = admin_dsn or os.environ.get("OPS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory(prefix="ops-bench-") as tmp:
        figures = run_extract_bench(rows, admin_dsn, Path(tmp))
    print_table(figures)
    write_figures(json_path, figures)
    return 0
