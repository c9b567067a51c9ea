"""Error templates in the warehouse: mine the error events not mined yet, exactly once.

Tables (schema ``marts``):
- ``error_event_templates``  one row per mined error event: event_id → template_id (as assigned;
                             follow ``error_template_aliases`` to the live id);
- ``error_template_aliases`` old template id → live id, for ids a later generalisation replaced;
- ``mart_error_templates``   one row per live template: text, first/last seen, counts (all time;
                             last 7 and 30 days before ``as_of``, set by the template marts'
                             build), families and jobs it appears in, an example, ``is_new``
                             (first seen in the latest run);
- ``error_template_state``   the miner's state (JSON), saved in the same transaction as the
                             assignments, so a crash neither loses nor double-counts an event,
                             and ``mined_through``: the newest ``_loaded_at`` of the fact table
                             the run saw. Every unmined error event loaded by then was mined, so
                             the next run reads only the events loaded from then on (an event
                             merged again — undeleted, changed — gets a new ``_loaded_at``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
import pyarrow as pa

from orchestration.lib.db import duckdb_connect, postgres_connect
from orchestration.lib.settings import Location
from orchestration.lib.templates.api import MiningRun, alias_rows
from orchestration.lib.templates.miner import TemplateMiner

SCHEMA = "marts"
DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {SCHEMA}.error_event_templates (
        event_id text not null, template_id text not null, assigned_at timestamptz not null)""",
    f"create table if not exists {SCHEMA}.error_template_aliases (old_id text not null, template_id text not null)",
    f"create table if not exists {SCHEMA}.error_template_state (state text not null, updated_at timestamptz not null)",
    f"alter table {SCHEMA}.error_template_state add column if not exists mined_through timestamptz",
    f"""create table if not exists {SCHEMA}.mart_error_templates (
        template_id text not null, template text not null, first_seen_at timestamptz, last_seen_at timestamptz,
        n_events bigint not null, n_events_7d bigint not null, n_events_30d bigint not null,
        event_types text, job_names text, example_message text, is_new boolean not null,
        window_end timestamptz not null)""",
]

# PostgreSQL: the dbt template models join the assignments by event_id and find the newly
# assigned ones by assigned_at (int_template_hour_counts); without these, each hourly run read
# every assignment. DuckDB scans them faster than it would maintain an index.
POSTGRES_INDEXES = [
    f"create index if not exists error_event_templates_event_id on {SCHEMA}.error_event_templates (event_id)",
    f"create index if not exists error_event_templates_assigned_at on {SCHEMA}.error_event_templates (assigned_at)",
]

# error events of the fact table that no earlier run mined, oldest first; {loaded_since} bounds
# them to the rows loaded since the previous run's mined_through (by index on PostgreSQL; the
# anti-join alone read every error event of the history on every run)
NEW_ERROR_EVENTS = f"""
    select f.event_id, f.event_type, f.job_name, f.created_at, coalesce(f.message, f.error_text, f.event_type)
    from {SCHEMA}.fct_system_events f
    where f.is_error and not f.is_deleted {{loaded_since}}
      and not exists (select 1 from {SCHEMA}.error_event_templates m where m.event_id = f.event_id)
    order by f.created_at, f.event_id"""

# events read, mined and staged at a time: the first run over a large history never holds it whole
MINE_BATCH_ROWS = 20_000
# this run's assignments as made (template ids as of then), resolved to the live ids at the end
ASSIGNED = "_ops_template_assigned"
LIVE_IDS = "_ops_template_live_ids"


@dataclass
class TemplateRunResult:
    events_mined: int
    templates_total: int
    new_templates: list[tuple[str, str]] = field(default_factory=list)  # (template_id, template)


def refresh_templates(warehouse: Location, as_of: datetime | None = None) -> TemplateRunResult:
    as_of = as_of or datetime.now(timezone.utc)
    conn = postgres_connect(warehouse) if warehouse.is_postgres else duckdb_connect(warehouse)
    p = "%s" if warehouse.is_postgres else "?"
    try:
        for stmt in DDL + (POSTGRES_INDEXES if warehouse.is_postgres else []):
            conn.execute(stmt)
        if not warehouse.is_postgres:
            conn.execute("begin transaction")
        state_rows = conn.execute(f"select state, mined_through from {SCHEMA}.error_template_state").fetchall()
        miner = TemplateMiner.from_dict(json.loads(state_rows[0][0])) if state_rows else TemplateMiner()
        mined_before = state_rows[0][1] if state_rows else None
        # read in this transaction, before the events: what this run sees, it mines
        mined_through = conn.execute(f"select max(_loaded_at) from {SCHEMA}.fct_system_events").fetchone()[0]
        now = datetime.now(timezone.utc)
        run = _mine_new_events(conn, warehouse, miner, now, p, mined_before)
        templates = run.templates()
        conn.execute(f"delete from {SCHEMA}.error_template_aliases")
        _insert_many(conn, warehouse, f"{SCHEMA}.error_template_aliases", alias_rows(miner), p)
        conn.execute(f"delete from {SCHEMA}.error_template_state")
        conn.execute(f"insert into {SCHEMA}.error_template_state (state, updated_at, mined_through) "
                     f"values ({p}, {p}, {p})", (json.dumps(miner.to_dict()), now, mined_through or mined_before))
        new_ids = {row.template_id for row in templates if row.is_new}
        _rebuild_mart(conn, warehouse, miner, new_ids, as_of, p)
        conn.commit() if warehouse.is_postgres else conn.execute("commit")
        return TemplateRunResult(
            events_mined=run.assigned,
            templates_total=len(miner.clusters),
            new_templates=sorted((r.template_id, r.template) for r in templates if r.is_new),
        )
    except BaseException:
        try:
            conn.rollback() if warehouse.is_postgres else conn.execute("rollback")
        except Exception:
            pass
        raise
    finally:
        conn.close()


def _mine_new_events(conn, warehouse: Location, miner: TemplateMiner, now: datetime, p: str,
                     loaded_since: datetime | None) -> MiningRun:
    """Mine the events no run mined yet, MINE_BATCH_ROWS at a time (read through a cursor of their
    own, oldest first), staging the assignments in a temp table; then record them under the ids
    live at the end of the run, in the order mined — what one pass over all of them would write."""
    run = MiningRun(miner)
    conn.execute(f"create temp table {ASSIGNED} (seq bigint, event_id text, template_id text)")
    conn.execute(f"create temp table {LIVE_IDS} (template_id text, live_id text)")
    seq = 0
    for chunk in _new_error_events(conn, warehouse, loaded_since):
        raw = run.feed(chunk)
        _insert_many(conn, warehouse, ASSIGNED, [(seq + i, str(e), t) for i, (e, t) in enumerate(raw)], p)
        seq += len(raw)
    _insert_many(conn, warehouse, LIVE_IDS,
                 [(tid, live) for tid in sorted(run.touched) if (live := run.resolve(tid)) != tid], p)
    conn.execute(f"""
        insert into {SCHEMA}.error_event_templates (event_id, template_id, assigned_at)
        select a.event_id, coalesce(l.live_id, a.template_id), cast({p} as timestamptz)
        from {ASSIGNED} a left join {LIVE_IDS} l on l.template_id = a.template_id
        order by a.seq""", (now,))
    conn.execute(f"drop table {ASSIGNED}")
    conn.execute(f"drop table {LIVE_IDS}")
    return run


def _new_error_events(conn, warehouse: Location, loaded_since: datetime | None):
    """NEW_ERROR_EVENTS in lists of MINE_BATCH_ROWS rows: a server-side cursor on PostgreSQL (in
    this transaction); on DuckDB a cursor (a second connection: a pending result does not survive
    another statement on its own connection), which sees what this transaction sees, since it has
    written nothing the query reads."""
    # a literal, so PostgreSQL plans the index range of _loaded_at (>=: rows stamped at the
    # watermark itself are read again; the anti-join drops the ones mined)
    bound = "" if loaded_since is None else (
        f"and f._loaded_at >= cast('{loaded_since.astimezone(timezone.utc).isoformat()}' as timestamptz)")
    query = NEW_ERROR_EVENTS.format(loaded_since=bound)
    if warehouse.is_postgres:
        with conn.cursor(name="ops_new_error_events") as cur:
            cur.itersize = MINE_BATCH_ROWS
            cur.execute(query)
            while chunk := cur.fetchmany(MINE_BATCH_ROWS):
                yield chunk
        return
    cur = conn.cursor()
    try:
        cur.execute("set timezone = 'UTC'")
        cur.execute(query)
        while chunk := cur.fetchmany(MINE_BATCH_ROWS):
            yield chunk
    finally:
        cur.close()


def _insert_many(conn, warehouse: Location, table: str, rows: list[tuple], p: str) -> None:
    if not rows:
        return
    if isinstance(conn, psycopg.Connection):
        with conn.cursor().copy(f"copy {table} from stdin") as copy:
            for row in rows:
                copy.write_row(row)
    else:  # DuckDB: one columnar insert (executemany is row by row)
        columns = list(zip(*rows))
        batch = pa.table({f"c{i}": pa.array(col) for i, col in enumerate(columns)})
        conn.register("ops_template_rows", batch)
        try:
            conn.execute(f"insert into {table} select * from ops_template_rows")
        finally:
            conn.unregister("ops_template_rows")


def _rebuild_mart(conn, warehouse: Location, miner: TemplateMiner, new_ids: set[str], as_of: datetime,
                  p: str) -> None:
    """All live templates with all-time counts (from the state). The 7- and 30-day counts are set
    by the template marts' build (mart_template_rank_7d_30d's post-hook sums them from the hourly
    counts: re-counting 30 days of events here grew with the history); until then each template
    keeps its counts of the previous run."""
    previous = {template_id: (n_7d, n_30d) for template_id, n_7d, n_30d in conn.execute(
        f"select template_id, n_events_7d, n_events_30d from {SCHEMA}.mart_error_templates").fetchall()}
    conn.execute(f"delete from {SCHEMA}.mart_error_templates")
    rows = []
    for cluster in miner.clusters.values():
        n_7d, n_30d = previous.get(cluster.template_id, (0, 0))
        rows.append((cluster.template_id, cluster.template, cluster.first_seen_at, cluster.last_seen_at,
                     cluster.size, n_7d, n_30d, ", ".join(sorted(cluster.event_types)),
                     ", ".join(sorted(cluster.job_names)), cluster.example_message,
                     cluster.template_id in new_ids, as_of))
    _insert_many(conn, warehouse, f"{SCHEMA}.mart_error_templates", rows, p)
