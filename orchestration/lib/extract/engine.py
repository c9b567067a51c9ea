"""Extraction of one source table into the warehouse ``raw`` schema: incremental, exactly once,
and right whatever the bot's writers did.

One run of one table, in ONE warehouse transaction and ONE source snapshot:

1. look at the source relation (a table or a view, named by the settings): a missing relation, or
   a missing or retyped column the models need, fails this table only (``ExtractError``); added,
   dropped and retyped columns are reported (schema drift);
2. the main read — by mode:
   - incremental: rows with ``cursor >= last cursor - overlap`` (late commits), rows whose cursor
     is NULL (they go to quarantine, every mode), and for tables updated in place every row
     created in the hot window (the bot changes statuses without touching ``updated_at``);
     ``job_heartbeats`` is small and re-read whole;
   - full_refresh: every row (into DuckDB, in slices of whole days of ~OPS_EXTRACT_SLICE_ROWS
     rows each, merged one by one: the memory of a merge follows the slice, not the table);
     backfill: the rows whose partition column is in [start, end);
3. refuse bad rows (quarantine, with their reason) and merge the rest on the key: insert, update
   what changed (by row hash), mark deleted what the read's scope no longer holds (history kept),
   snapshot the changes (heartbeats, decisions);
4. reconcile: per-day row counts and hash sums, source against raw — the hot window's days for
   the event log every run, every day of every table when the full reconcile is due (daily by
   default) — and re-read the days that differ (a targeted backfill, recorded in the result);
5. advance the cursor (never past the source's clock) and commit rows, quarantine and cursor
   together.

A crash or a killed connection anywhere before the commit rolls everything back, cursor
included, so the rerun reads the same rows again: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from orchestration.lib import settings
from orchestration.lib.db import duckdb_connect, is_lock_timeout, lock_holders, postgres_connect
from orchestration.lib.extract import readers
from orchestration.lib.extract.merge import (
    PG_JSON_CHECK_FN,
    Dialect,
    MergeCounts,
    MergeSql,
    RejectRules,
    day_start,
    first_load_fixups,
    first_load_snapshots,
    raw_bucket_stats_sql,
    rows,
    run_merge,
    scalar,
)
from orchestration.lib.extract.raw_schema import (
    RAW_SCHEMA,
    TABLES,
    TableSpec,
    all_raw_ddl,
)
from orchestration.lib.extract.source import (
    Drift,
    ExtractError,
    ReadPlan,
    Scope,
    SourceRelation,
    inspect_columns,
    is_day_bucket,
    plan_read,
)
from orchestration.lib.settings import Location

Mode = Literal["incremental", "full_refresh", "backfill"]
__all__ = ["ExtractError", "ExtractRequest", "ExtractResult", "ReconcileReport", "extract_table", "extract_all",
           "ensure_raw_schema", "record_failure", "failed_tables"]


@dataclass(frozen=True)
class ExtractRequest:
    mode: Mode = "incremental"
    backfill_start: datetime | None = None
    backfill_end: datetime | None = None
    overlap: timedelta | None = None
    # None: the full reconcile runs when due (OPS_RECONCILE_INTERVAL_HOURS); True / False forces it
    reconcile: bool | None = None
    hot_window: timedelta | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("incremental", "full_refresh", "backfill"):
            raise ValueError(f"mode must be incremental, full_refresh or backfill, not {self.mode!r}")
        if self.mode == "backfill":
            if self.backfill_start is None or self.backfill_end is None:
                raise ValueError("a backfill needs both a start and an end")
            if self.backfill_start >= self.backfill_end:
                raise ValueError("backfill start must be before its end")
        elif self.backfill_start is not None or self.backfill_end is not None:
            raise ValueError("backfill_start/backfill_end only go with mode='backfill'")


@dataclass
class ReconcileReport:
    """One comparison of per-day counts and hash sums, and the re-reads it caused."""

    scope: str  # hot (the hot window's days) | full (every day)
    buckets_compared: int = 0
    differing: list[str] = field(default_factory=list)  # bucket labels: YYYY-MM-DD, none, infinity, all
    unresolved: list[str] = field(default_factory=list)  # still differing after the repair
    repairs: list[str] = field(default_factory=list)  # the re-read scopes
    counts: MergeCounts = field(default_factory=MergeCounts)
    seconds: float = 0.0

    @property
    def repaired(self) -> list[str]:
        return [b for b in self.differing if b not in self.unresolved]


@dataclass
class ExtractResult:
    table: str
    mode: str
    run_id: str
    window_start: datetime | None
    window_end: datetime | None
    cursor_before: datetime | None
    cursor_after: datetime | None
    source_now: datetime
    source_relation: str = ""
    counts: MergeCounts = field(default_factory=MergeCounts)  # the main read
    drift: Drift = field(default_factory=Drift)
    reconciles: list[ReconcileReport] = field(default_factory=list)
    quarantine_open: int = 0  # entries still open after this run (all runs)
    data_from: datetime | None = None  # where the table's live data starts (its partition column)
    first_load: bool = False
    # ANALYZE ran on the raw table (PostgreSQL, after a first load or a read that changed many rows)
    analyzed: bool = False
    loaded_through: datetime | None = None  # the newest _loaded_at this run stamped
    seconds: float = 0.0

    def _total(self, name: str) -> int:
        return getattr(self.counts, name) + sum(getattr(r.counts, name) for r in self.reconciles)

    @property
    def rows_read(self) -> int:
        return self.counts.read

    @property
    def rows_inserted(self) -> int:
        return self._total("inserted")

    @property
    def rows_updated(self) -> int:
        return self._total("updated") + self._total("restored")

    @property
    def rows_unchanged(self) -> int:
        return self.counts.unchanged

    @property
    def rows_marked_deleted(self) -> int:
        return self._total("deleted")

    @property
    def rows_quarantined(self) -> int:
        """Bad rows met by this run (including ones already in the quarantine)."""
        return self.counts.quarantined + sum(r.counts.quarantined for r in self.reconciles)

    @property
    def rows_newly_quarantined(self) -> int:
        """Bad rows this run put in the quarantine (a row is quarantined once)."""
        return self._total("quarantined_new")

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        merged = MergeCounts()
        merged.add(self.counts)
        for report in self.reconciles:
            merged.add(report.counts)
        return merged.quarantined_by_reason or {}

    @property
    def snapshots_added(self) -> int:
        return self._total("snapshots")

    @property
    def unresolved(self) -> list[str]:
        return [b for r in self.reconciles for b in r.unresolved]

    @property
    def lag_seconds(self) -> float | None:
        """How far the warehouse trails the source's clock for this table."""
        if self.cursor_after is None:
            return None
        return max(0.0, (self.source_now - self.cursor_after).total_seconds())

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# the raw schema


def ensure_raw_schema(warehouse: Location, conn=None) -> None:
    """Create what is missing (tables, bookkeeping, columns added by later releases). Nothing runs
    when nothing is missing: ALTER TABLE would lock a table analysts may be reading."""
    own = conn is None
    conn = conn or _warehouse_connect(warehouse)
    try:
        existing = _raw_columns(conn)
        for stmt in all_raw_ddl(postgres=warehouse.is_postgres):
            if _already_done(stmt, existing):
                continue
            conn.execute(stmt)
        if warehouse.is_postgres:
            if not conn.execute("select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                                "where n.nspname = %s and p.proname = '_is_valid_json'", (RAW_SCHEMA,)).fetchall():
                conn.execute(PG_JSON_CHECK_FN)
            conn.commit()
    finally:
        if own:
            conn.close()


def _already_done(stmt: str, existing: dict[str, dict[str, bool]]) -> bool:
    head = stmt.split("(", 1)[0]
    if stmt.startswith("create schema"):
        return bool(existing)
    if stmt.startswith("create table if not exists"):
        return head.split(f"{RAW_SCHEMA}.", 1)[1].strip() in existing
    if stmt.startswith("create index if not exists"):
        return bool(existing)  # made with its table
    if " add column if not exists " in stmt:
        table, column = stmt.split(f"{RAW_SCHEMA}.", 1)[1].split(" add column if not exists ")
        return column.split()[0] in existing.get(table.strip(), {})
    if " drop not null" in stmt:
        return existing.get(stmt.split(f"{RAW_SCHEMA}.", 1)[1].split()[0], {}).get("_row_hash", True)
    return False


def _raw_columns(conn) -> dict[str, dict[str, bool]]:
    """raw table -> column -> nullable."""
    found = conn.execute(
        "select table_name, column_name, is_nullable from information_schema.columns "
        f"where table_schema = '{RAW_SCHEMA}'").fetchall()
    out: dict[str, dict[str, bool]] = {}
    for table, column, nullable in found:
        out.setdefault(table, {})[column] = nullable in ("YES", True)
    return out


# ---------------------------------------------------------------------------------------------
# one table


def extract_table(source: Location, warehouse: Location, table: str,
                  request: ExtractRequest = ExtractRequest(), *, on_batch=None,
                  run_id: str | None = None, relation: SourceRelation | None = None) -> ExtractResult:
    spec = TABLES[table]
    relation = relation or SourceRelation.for_spec(spec)
    run_id = run_id or uuid.uuid4().hex[:12]
    started = time.perf_counter()
    wh = _warehouse_connect(warehouse)
    session = None
    dialect = Dialect(warehouse.is_postgres)
    try:
        ensure_raw_schema(warehouse, wh)
        session = readers.open_session(source, warehouse, wh)
        if not warehouse.is_postgres:
            wh.execute("begin transaction")  # psycopg opens its transaction implicitly
        else:  # one extract of a table at a time; held until commit/rollback (or lock_timeout)
            try:
                wh.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"ops_extract:{table}",))
            except Exception as exc:
                if not is_lock_timeout(exc):
                    raise
                raise LockWaitTimeout(
                    f"another extract of {table} is running: waited {settings.pg_timeouts().lock:g} s for its "
                    f"lock and gave up (lock_timeout, OPS_PG_LOCK_TIMEOUT_SECONDS)") from None
        source_now = session.now()
        state = _read_state(wh, dialect, table)
        # read inside the lock: no other extract of this table can stamp rows until we commit
        stamps = _Stamps(datetime.now(timezone.utc), _newest_stamp(wh, spec, state))
        columns = inspect_columns(session.rows, relation, source.is_postgres)
        previous = _previous_columns(wh, dialect, table)
        plan = plan_read(spec, relation, columns, source.is_postgres, previous or None)
        _record_columns(wh, dialect, table, columns, previous, stamps.now)
        cursor_before = state.get("cursor_value")
        overlap = request.overlap if request.overlap is not None else timedelta(minutes=settings.overlap_minutes())
        hot_window = request.hot_window if request.hot_window is not None else timedelta(
            days=settings.hot_window_days())
        # the last N days of the data (of the source's clock, when the data is current); a zero
        # window turns the hot window off (the benchmark's plain incremental run)
        hot_lo = (_day_floor(min(source_now, cursor_before or source_now) - hot_window)
                  if hot_window > timedelta(0) else None)
        scope = _main_scope(spec, request, cursor_before, overlap, hot_lo)
        rules = RejectRules(floor=settings.time_floor(),
                            future_limit=source_now + timedelta(minutes=settings.future_tolerance_minutes()))
        result = ExtractResult(
            table=table, mode=request.mode, run_id=run_id,
            window_start=scope.cursor_from or scope.range_from, window_end=scope.range_to,
            cursor_before=cursor_before, cursor_after=cursor_before, source_now=source_now,
            source_relation=relation.display(source.is_postgres), drift=plan.drift)

        result.first_load = request.mode != "backfill" and _raw_is_empty(wh, spec)
        reader = _Reader(session, wh, plan, dialect, rules, run_id, on_batch)
        result.counts = reader.read(scope, stamps.next(), first_load=result.first_load)
        if request.mode != "backfill":
            result.cursor_after = _advance_cursor(cursor_before, result.counts.newest_cursor, source_now)

        full_due = _full_reconcile_due(state, request, stamps.now, result.first_load)
        if full_due:
            result.reconciles.append(_reconcile(reader, Scope("full", everything=True), "full", stamps))
        elif (request.mode == "incremental" and cursor_before is not None and not spec.mutable
              and spec.partition is not None and hot_lo is not None):
            result.reconciles.append(_reconcile(reader, Scope("hot", partition_from=hot_lo), "hot", stamps))
        reconciled_fully = full_due or (request.mode == "full_refresh") or result.first_load

        result.quarantine_open = scalar(wh, f"select count(*) from {RAW_SCHEMA}._quarantine "
                                            f"where source_table = '{table}' and resolved_at is null")
        if spec.partition:
            result.data_from = _scalar_or_none(wh, f'select min("{spec.partition}") from {RAW_SCHEMA}.{table} '
                                                   "where _deleted_at is null")
        if warehouse.is_postgres and _analyze_due(wh, spec, result):
            _analyze(wh, spec)
            result.analyzed = True
        result.loaded_through = stamps.newest
        result.seconds = time.perf_counter() - started
        _write_state(wh, dialect, spec, result, stamps.now, reconciled_fully)
        wh.commit() if warehouse.is_postgres else wh.execute("commit")
        return result
    except BaseException as exc:
        try:
            wh.rollback() if warehouse.is_postgres else wh.execute("rollback")
        except Exception:  # the connection itself may be what died
            pass
        if not isinstance(exc, LockWaitTimeout) and is_lock_timeout(exc):
            raise LockWaitTimeout(_lock_wait_message(source, warehouse, table, relation)) from exc
        raise
    finally:
        if session is not None:
            try:
                session.close()
            except Exception:
                pass
        wh.close()


class LockWaitTimeout(RuntimeError):
    """A statement of an extract waited lock_timeout for a lock another session holds."""


def _lock_wait_message(source: Location, warehouse: Location, table: str, relation: SourceRelation) -> str:
    """Which lock, held by whom (as far as pg_locks still shows it), and the setting."""
    held = []
    if warehouse.is_postgres:
        held += [f"warehouse {h}" for h in lock_holders(warehouse, [], schema=RAW_SCHEMA)]
    if source.is_postgres:
        held += [f"source {h}" for h in lock_holders(source, [relation.ref(True)])]
    return (f"waited {settings.pg_timeouts().lock:g} s for a lock on the source's "
            f"{relation.display(source.is_postgres)} or the warehouse's {RAW_SCHEMA} tables and gave up "
            f"(lock_timeout, OPS_PG_LOCK_TIMEOUT_SECONDS): "
            + ("; ".join(held) if held else "no other session holds a lock on them any more (released since)"))


def extract_all(source: Location, warehouse: Location, request: ExtractRequest = ExtractRequest(),
                tables: list[str] | None = None) -> list[ExtractResult]:
    """Every table, each on its own: one table's failure never stops the others; the failures are
    raised together at the end (``ExtractError`` naming each table)."""
    results, failures = [], []
    run_id = uuid.uuid4().hex[:12]
    for table in tables or list(TABLES):
        try:
            results.append(extract_table(source, warehouse, table, request, run_id=run_id))
        except Exception as exc:
            failures.append(f"{table}: {exc}")
            record_failure(warehouse, table, run_id, str(exc))
    if failures:
        raise ExtractError(f"{len(failures)} of {len(tables or TABLES)} tables failed to extract:\n"
                           + "\n".join(failures))
    return results


def record_failure(warehouse: Location, table: str, run_id: str, message: str) -> None:
    """Best effort, in its own transaction (the extract's own was rolled back): what failed, so the
    dbt step leaves out the models that read this table and the operator sees why."""
    try:
        ensure_raw_schema(warehouse)
        conn = _warehouse_connect(warehouse)
    except Exception:
        return
    try:
        d = Dialect(warehouse.is_postgres)
        spec = TABLES[table]
        now = datetime.now(timezone.utc)
        conn.execute(
            f"""insert into {RAW_SCHEMA}._extract_state
                (source_table, cursor_column, last_run_id, last_status, last_error, last_failed_at)
                values ({_lit(table)}, {_lit(spec.cursor)}, {_lit(run_id)}, 'failed', {_lit(message[:4000])},
                        {_ts(now)})
                on conflict (source_table) do update set last_run_id = excluded.last_run_id,
                  last_status = 'failed', last_error = excluded.last_error, last_failed_at = excluded.last_failed_at""")
        conn.commit() if d.postgres else None
    finally:
        conn.close()


def failed_tables(warehouse: Location, run_id: str) -> dict[str, str]:
    """Tables whose extract failed in this run: table -> error."""
    try:
        conn = (postgres_connect(warehouse, autocommit=True) if warehouse.is_postgres
                else duckdb_connect(warehouse, read_only=True))
    except Exception:
        return {}
    try:
        found = conn.execute(
            f"select source_table, last_error from {RAW_SCHEMA}._extract_state "
            f"where last_status = 'failed' and last_run_id = {_lit(run_id)}").fetchall()
        return {table: error or "" for table, error in found}
    except Exception:  # no raw schema yet
        return {}
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# reads


class _Stamps:
    """_loaded_at of each read of a run: one instant per read (a microsecond apart), so a read's
    deletion marks and snapshots are told from another's.

    Strictly after every stamp the table already holds, even when the clock stepped back (NTP, a
    restored VM): base = max(now, the table's previous newest stamp + 1 ms). dbt's incremental
    filter is strict (``_loaded_at > max(_loaded_at)`` of the model, macros/incremental.sql), so a
    run's rows are always newer than what the previous dbt run saw, however they were loaded (a
    bulk first load stamps every row alike, and the next run still reads only the new ones).
    ``now`` stays the wall clock for the bookkeeping (last_run_at: the staleness alert)."""

    STEP = timedelta(milliseconds=1)

    def __init__(self, now: datetime, previous: datetime | None = None) -> None:
        self.now = now
        self.base = now if previous is None else max(now, _as_utc(previous) + self.STEP)
        self.n = 0

    def next(self) -> datetime:
        self.n += 1
        return self.base + timedelta(microseconds=self.n)

    @property
    def newest(self) -> datetime:
        """The last stamp handed out (base itself when none was)."""
        return self.base + timedelta(microseconds=self.n)


def _newest_stamp(wh, spec: TableSpec, state: dict) -> datetime | None:
    """The newest _loaded_at the table (or its snapshot) holds: raw._extract_state.loaded_through;
    a warehouse from a release before that column falls back to the largest of its last_run_at
    (the base of its stamps then) and, once, max(_loaded_at) of the raw table."""
    if state.get("loaded_through") is not None:
        return state["loaded_through"]
    newest = _scalar_or_none(wh, f"select max(_loaded_at) from {RAW_SCHEMA}.{spec.name}")
    candidates = [_as_utc(v) for v in (newest, state.get("last_run_at")) if v is not None]
    return max(candidates) if candidates else None


# ANALYZE a raw table (PostgreSQL) after a read that changed more than this share of its rows or
# this many rows, and after every first load. The share is autovacuum's own default
# (autovacuum_analyze_scale_factor 0.1), for servers where autovacuum is off or lags behind a bulk
# load; the absolute bound keeps a 10M-row table from going 1M rows (days of events) without
# fresh statistics. ANALYZE samples a fixed 30k rows (default_statistics_target 100): about 0.1-0.3 s
# whatever the table's size, against several seconds to merge 100k rows.
ANALYZE_MIN_SHARE = 0.1
ANALYZE_MIN_ROWS = 100_000


def _analyze_due(wh, spec: TableSpec, result: ExtractResult) -> bool:
    if result.first_load:
        return result.rows_inserted > 0
    changed = result.rows_inserted + result.rows_updated + result.rows_marked_deleted
    if changed == 0:
        return False
    if changed > ANALYZE_MIN_ROWS:
        return True
    # reltuples: the row count at the last ANALYZE/VACUUM/index build (-1: never counted)
    known = _scalar_or_none(wh, f"select reltuples from pg_class where oid = '{RAW_SCHEMA}.{spec.name}'::regclass")
    return known is None or known < 0 or changed > ANALYZE_MIN_SHARE * known


def _analyze(wh, spec: TableSpec) -> None:
    """Inside the extract's transaction: ANALYZE samples the rows this transaction wrote too."""
    wh.execute(f"analyze {RAW_SCHEMA}.{spec.name}")
    if spec.snapshot_table:
        wh.execute(f"analyze {RAW_SCHEMA}.{spec.snapshot_table}")


class _Reader:
    """Reads one scope of the source into the warehouse and merges it."""

    def __init__(self, session: readers.SourceSession, wh, plan: ReadPlan, dialect: Dialect, rules: RejectRules,
                 run_id: str, on_batch) -> None:
        self.session, self.wh, self.plan, self.d, self.rules = session, wh, plan, dialect, rules
        self.run_id, self.on_batch = run_id, on_batch
        self.spec = plan.spec

    def read(self, scope: Scope, stamp: datetime, first_load: bool = False) -> MergeCounts:
        slices = [] if first_load else self._slices(scope)
        if slices:
            counts = MergeCounts()
            for part in slices:
                counts.add(self._read_one(part, stamp, sliced=True))
            counts.slices = len(slices)
            return counts
        return self._read_one(scope, stamp, first_load)

    def _slices(self, scope: Scope) -> list[Scope]:
        """A whole-table read into DuckDB, as slices of whole UTC days of about
        settings.extract_slice_rows() source rows each, contiguous and open at both ends (an
        absurd or infinite timestamp falls in the first or last), plus the rows without a
        partition value: every raw row is in exactly one slice, so each slice's merge marks
        deleted what it no longer finds. [] (read whole) on PostgreSQL (its merge does not grow in
        memory: 92 MB at 10M rows), for tables without a partition column, for sources of one
        slice, and when the source repeats a key — the whole read refuses every copy of such a key,
        slices would see one copy each."""
        spec = self.spec
        if self.d.postgres or not scope.everything or spec.partition is None:
            return []
        slice_rows = settings.extract_slice_rows()
        per_day = sorted((int(bucket), int(n)) for bucket, n in self.session.rows(self.plan.bucket_counts_query())
                         if is_day_bucket(str(bucket)))
        if sum(n for _, n in per_day) <= slice_rows:
            return []
        if int(self.session.rows(self.plan.duplicate_keys_query())[0][0]):
            return []
        bounds, in_slice = [], 0
        for day, n in per_day:
            if in_slice >= slice_rows:
                bounds.append(day_start(day))
                in_slice = 0
            in_slice += n
        if not bounds:  # one day holds them all
            return []
        edges = [None, *bounds, None]
        slices = [Scope(f"{scope.label} slice {i + 1}/{len(edges) - 1}", range_from=lo, range_to=hi)
                  for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]
        return [*slices, Scope(f"{scope.label} slice without {spec.partition}", partition_is_null=True)]

    def _read_one(self, scope: Scope, stamp: datetime, first_load: bool = False, sliced: bool = False) -> MergeCounts:
        sql = MergeSql(self.plan, self.d, self.rules, scope, stamp, self.run_id, f"_stage_{self.spec.name}")
        query = self.plan.query(scope, **self.session.select_options)
        if first_load:
            counts = self._first_load(sql, query)
        else:
            self.wh.execute(sql.stage_ddl())
            self._stream(sql, query, sql.stage)
            counts = self._merge(sql, sliced=sliced)
        return counts

    def _merge(self, sql: MergeSql, sliced: bool = False) -> MergeCounts:
        """The stage's merge: on DuckDB under the general limit (OPS_DUCKDB_MEMORY_LIMIT), not the
        extract's: joining a whole-table stage to raw (a full refresh of 10M events) failed at
        192MB ('failed to pin block'); streaming the stage in stays under the extract's. A slice
        of a full refresh merges under the extract's limit: DuckDB's buffer pool fills up to
        whatever limit is set (3M rows: 1,178 MB peak with 1M-row slices under 1GB, 421 MB under
        192MB)."""
        if self.d.postgres or sliced:
            return run_merge(self.wh, sql)
        self.wh.execute(f"set memory_limit = '{settings.duckdb_memory_limit()}'")
        try:
            return run_merge(self.wh, sql)
        finally:
            try:
                self.wh.execute(f"set memory_limit = '{settings.extract_duckdb_memory_limit()}'")
            except Exception:  # an aborted transaction refuses even SET: the original error matters
                pass

    def _stream(self, sql: MergeSql, query: str, target: str, *, loaded_at: bool = False) -> None:
        session = self.session
        columns = [*self.spec.column_names, "_row_hash"]
        if isinstance(session, readers.PostgresCopySession) or (
                isinstance(session, readers.DuckDBSession) and session.own):
            session.copy_into_postgres(self.wh, query, target, columns, self.on_batch)
        elif isinstance(session, readers.PostgresArrowSession):
            land = sql.land_into_duckdb(target, nonfinite=True, loaded_at=loaded_at)
            session.stream_into_duckdb(self.wh, query, land, self.on_batch)
        else:
            assert isinstance(session, readers.DuckDBSession)
            session.insert_into_duckdb(query, sql.land_into_duckdb(target, nonfinite=False, loaded_at=loaded_at),
                                       self.on_batch)

    def _first_load(self, sql: MergeSql, query: str) -> MergeCounts:
        """An empty raw table: land straight into it (no stage to write twice), refuse the bad rows
        after; on PostgreSQL without its indexes, built once at the end (measured: the stage path
        ran at ~0.7 of a plain COPY pipe for 1M rows)."""
        wh = self.wh
        rebuild: list[str] = []
        if self.d.postgres:
            rebuild = _drop_indexes(wh, self.spec.name)
            wh.execute(f"alter table {sql.target} alter column _loaded_at set default {sql.stamp}")
            self._stream(sql, query, sql.target)
            wh.execute(f"alter table {sql.target} alter column _loaded_at drop default")
        else:
            self._stream(sql, query, sql.target, loaded_at=True)
        loaded = scalar(wh, f"select count(*) from {sql.target}")
        counts = first_load_fixups(wh, sql, loaded, find_duplicates=not self.d.postgres)
        if rebuild:
            counts = self._rebuild_keys(sql, rebuild, counts)
        counts.snapshots = first_load_snapshots(wh, sql)
        counts.newest_cursor = _scalar_or_none(wh, f'select max("{self.spec.cursor}") from {sql.target}')
        return counts


    def _rebuild_keys(self, sql: MergeSql, rebuild: list[str], counts: MergeCounts) -> MergeCounts:
        """PostgreSQL's first load: the primary key's build finds a duplicated key for free (it
        sorts the keys anyway); only then are the duplicates looked for and quarantined."""
        import psycopg

        self.wh.execute("savepoint ops_rebuild_keys")
        try:
            for statement in rebuild:
                self.wh.execute(statement)
            return counts
        except psycopg.errors.UniqueViolation:
            self.wh.execute("rollback to savepoint ops_rebuild_keys")
        again = first_load_fixups(self.wh, sql, counts.inserted, find_duplicates=True)
        counts.add(MergeCounts(quarantined_by_reason=again.quarantined_by_reason,
                               quarantined_new=again.quarantined_new))
        counts.inserted -= again.quarantined
        for statement in rebuild:
            self.wh.execute(statement)
        return counts


def _main_scope(spec: TableSpec, request: ExtractRequest, cursor: datetime | None, overlap: timedelta,
                hot_lo: datetime | None) -> Scope:
    if request.mode == "backfill":
        return Scope("backfill", range_from=request.backfill_start, range_to=request.backfill_end)
    if request.mode == "full_refresh" or cursor is None or (spec.mutable and spec.partition is None):
        return Scope(request.mode if request.mode == "full_refresh" else "all", everything=True)
    if spec.mutable:
        return Scope("incremental", cursor_from=cursor - overlap, partition_from=hot_lo)
    return Scope("incremental", cursor_from=cursor - overlap)


# ---------------------------------------------------------------------------------------------
# reconciliation


def _reconcile(reader: _Reader, scope: Scope, label: str, stamps: _Stamps) -> ReconcileReport:
    started = time.perf_counter()
    report = ReconcileReport(scope=label)
    source_stats = _stats(reader.session.rows(reader.plan.bucket_stats_query(scope)))
    raw_stats = _stats(rows(reader.wh, raw_bucket_stats_sql(reader.spec, reader.d, scope)))
    buckets = set(source_stats) | set(raw_stats)
    report.buckets_compared = len(buckets)
    differing = sorted((b for b in buckets if source_stats.get(b) != raw_stats.get(b)), key=_bucket_order)
    report.differing = [bucket_label(b) for b in differing]
    after: dict[str, tuple[int, int]] = {}
    after_raw: dict[str, tuple[int, int]] = {}
    for repair in repair_scopes(differing):
        report.repairs.append(repair.label)
        report.counts.add(reader.read(repair, stamps.next()))
        after.update(_stats(reader.session.rows(reader.plan.bucket_stats_query(repair))))
        after_raw.update(_stats(rows(reader.wh, raw_bucket_stats_sql(reader.spec, reader.d, repair))))
    report.unresolved = [bucket_label(b) for b in differing if after.get(b) != after_raw.get(b)]
    _log_reconcile(reader, label, differing, source_stats, raw_stats, set(report.unresolved), stamps.now)
    report.seconds = time.perf_counter() - started
    return report


def repair_scopes(buckets: list[str]) -> list[Scope]:
    """The re-reads that cover the differing buckets: consecutive days merged into one range."""
    days = sorted(int(b) for b in buckets if is_day_bucket(b))
    scopes = []
    run_start = prev = None
    for day in days + [None]:  # type: ignore[list-item]
        if day is not None and prev is not None and day == prev + 1:
            prev = day
            continue
        if run_start is not None:
            label = bucket_label(str(run_start)) + ("" if prev == run_start else f"..{bucket_label(str(prev))}")
            scopes.append(Scope(f"repair {label}", range_from=day_start(run_start), range_to=day_start(prev + 1)))
        run_start = prev = day
    for bucket in buckets:
        if bucket == "none":
            scopes.append(Scope("repair none", partition_is_null=True))
        elif bucket in ("infinity", "-infinity"):
            scopes.append(Scope(f"repair {bucket}", partition_equals=bucket))
        elif bucket == "all":
            scopes.append(Scope("repair all", everything=True))
    return scopes


def bucket_label(bucket: str) -> str:
    return day_start(int(bucket)).date().isoformat() if is_day_bucket(bucket) else bucket


def _bucket_order(bucket: str) -> tuple[int, int]:
    return (0, int(bucket)) if is_day_bucket(bucket) else (1, 0)


def _stats(found: list[tuple]) -> dict[str, tuple[int, int]]:
    return {str(bucket): (int(n), int(total) if total is not None else 0) for bucket, n, total in found}


def _log_reconcile(reader: _Reader, label: str, differing: list[str], source_stats, raw_stats, unresolved: set[str],
                   at: datetime) -> None:
    for bucket in differing:
        src, raw = source_stats.get(bucket, (0, 0)), raw_stats.get(bucket, (0, 0))
        day = f"date '{bucket_label(bucket)}'" if is_day_bucket(bucket) else "cast(null as date)"
        outcome = "unresolved" if bucket_label(bucket) in unresolved else "repaired"
        reader.wh.execute(
            f"""insert into {RAW_SCHEMA}._reconcile_log (run_id, source_table, checked_at, scope, bucket, day,
                  source_rows, raw_rows, source_hash_sum, raw_hash_sum, outcome)
                values ({_lit(reader.run_id)}, {_lit(reader.spec.name)}, {_ts(at)}, {_lit(label)}, {_lit(bucket)},
                        {day}, {src[0]}, {raw[0]}, {_lit(str(src[1]))}, {_lit(str(raw[1]))}, {_lit(outcome)})
                on conflict (run_id, source_table, scope, bucket) do update set outcome = excluded.outcome,
                  source_rows = excluded.source_rows, raw_rows = excluded.raw_rows""")


def _full_reconcile_due(state: dict, request: ExtractRequest, now: datetime, first_load: bool) -> bool:
    if request.reconcile is not None:
        return request.reconcile and not first_load
    if first_load or request.mode != "incremental":
        return False
    last = state.get("last_reconciled_at")
    return last is None or now - last >= timedelta(hours=settings.reconcile_interval_hours())


# ---------------------------------------------------------------------------------------------
# bookkeeping


def _previous_columns(wh, d: Dialect, table: str) -> dict[str, str]:
    return dict(wh.execute(
        f"select column_name, data_type from {RAW_SCHEMA}._source_columns "
        f"where source_table = {_lit(table)} and gone_since is null").fetchall())


def _record_columns(wh, d: Dialect, table: str, columns: dict, previous: dict[str, str], at: datetime) -> None:
    """The source's columns as observed now (the next run's baseline for drift); written only
    when they changed."""
    if previous == {c.name: c.data_type for c in columns.values()}:
        return
    for column in columns.values():
        wh.execute(
            f"""insert into {RAW_SCHEMA}._source_columns
                  (source_table, column_name, data_type, first_seen_at, last_seen_at, gone_since)
                values ({_lit(table)}, {_lit(column.name)}, {_lit(column.data_type)}, {_ts(at)}, {_ts(at)}, null)
                on conflict (source_table, column_name) do update set data_type = excluded.data_type,
                  last_seen_at = excluded.last_seen_at, gone_since = null""")
    names = ", ".join(_lit(name) for name in columns) or "''"
    wh.execute(f"update {RAW_SCHEMA}._source_columns set gone_since = {_ts(at)} "
               f"where source_table = {_lit(table)} and gone_since is null and column_name not in ({names})")


def _read_state(wh, d: Dialect, table: str) -> dict:
    cur = wh.execute(f"select * from {RAW_SCHEMA}._extract_state where source_table = {_lit(table)}")
    names = [c[0] for c in cur.description]
    found = cur.fetchall()
    if not found:
        return {}
    return {name: (_as_utc(v) if isinstance(v, datetime) else v) for name, v in zip(names, found[0])}


def _write_state(wh, d: Dialect, spec: TableSpec, r: ExtractResult, at: datetime, reconciled: bool) -> None:
    unresolved = ", ".join(r.unresolved) or None
    values = {
        "source_table": _lit(spec.name), "cursor_column": _lit(spec.cursor), "cursor_value": _ts(r.cursor_after),
        "last_run_at": _ts(at), "last_run_id": _lit(r.run_id), "rows_read": str(r.rows_read),
        "rows_inserted": str(r.rows_inserted), "rows_updated": str(r.rows_updated),
        "rows_deleted": str(r.rows_marked_deleted), "rows_quarantined": str(r.rows_newly_quarantined),
        "source_relation": _lit(r.source_relation), "last_status": "'succeeded'", "last_error": "null",
        "data_from": _ts(_as_utc(r.data_from) if r.data_from else None),
        "loaded_through": _ts(r.loaded_through),
    }
    if r.analyzed:
        values["last_analyzed_at"] = _ts(at)
    if reconciled:
        values.update(last_reconciled_at=_ts(at), last_reconcile_run_id=_lit(r.run_id),
                      reconcile_unresolved=_lit(unresolved))
    elif r.reconciles:
        values["reconcile_unresolved"] = _lit(unresolved)
    updates = ", ".join(f"{k} = excluded.{k}" for k in values if k != "source_table")
    wh.execute(f"insert into {RAW_SCHEMA}._extract_state ({', '.join(values)}) values ({', '.join(values.values())}) "
               f"on conflict (source_table) do update set {updates}")


def _raw_is_empty(wh, spec: TableSpec) -> bool:
    return not wh.execute(f"select 1 from {RAW_SCHEMA}.{spec.name} limit 1").fetchall()


def _drop_indexes(wh, table: str) -> list[str]:
    """Drop a raw table's key and indexes; return the statements that rebuild them as they were."""
    constraints = wh.execute(
        "select conname, pg_get_constraintdef(oid) from pg_constraint "
        "where conrelid = %s::regclass and contype in ('p', 'u')", (f"{RAW_SCHEMA}.{table}",)).fetchall()
    indexes = wh.execute(
        "select indexname, indexdef from pg_indexes where schemaname = %s and tablename = %s "
        "and indexname <> all(%s)", (RAW_SCHEMA, table, [name for name, _ in constraints])).fetchall()
    rebuild = []
    for name, definition in constraints:
        wh.execute(f'alter table {RAW_SCHEMA}.{table} drop constraint "{name}"')
        rebuild.append(f'alter table {RAW_SCHEMA}.{table} add constraint "{name}" {definition}')
    for name, definition in indexes:
        wh.execute(f'drop index {RAW_SCHEMA}."{name}"')
        rebuild.append(definition)
    return rebuild


def _advance_cursor(before: datetime | None, newest: datetime | None, source_now: datetime) -> datetime | None:
    """The cursor only moves forward, and never past the source's clock (future rows are
    quarantined, and must not drag the cursor past rows that are still to come)."""
    if newest is None:
        return before
    newest = min(_as_utc(newest), source_now)
    return newest if before is None else max(before, newest)


# ---------------------------------------------------------------------------------------------
# helpers


def _warehouse_connect(warehouse: Location):
    if not warehouse.is_postgres:
        # an extract's own memory limit (OPS_EXTRACT_DUCKDB_MEMORY_LIMIT); and no insertion order
        # to keep: under that limit an order-preserving INSERT of the stream ran 1.5-2x slower
        # (3M events: 34 s against 15 s, peak RSS 392 MB against 428 MB); no reader of raw relies
        # on its physical order (the batches still land roughly in the source's order)
        conn = duckdb_connect(warehouse, memory_limit=settings.extract_duckdb_memory_limit())
        conn.execute("set preserve_insertion_order = false")
        return conn
    conn = postgres_connect(warehouse)
    # the stage is a temp table: room for it in local buffers (settable before its first use);
    # and no wait for the WAL flush at commit: a crash loses rows and cursor together, which
    # the next run re-reads (exactly once either way)
    conn.execute("set temp_buffers = '256MB'")
    conn.execute("set synchronous_commit = off")
    conn.commit()
    return conn


def _day_floor(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _scalar_or_none(conn, sql: str):
    found = conn.execute(sql).fetchall()
    return found[0][0] if found else None


def _lit(value) -> str:
    if value is None:
        return "null"
    return "'" + str(value).replace("'", "''") + "'"


def _ts(value: datetime | None) -> str:
    return "cast(null as timestamptz)" if value is None else f"timestamptz '{value.isoformat()}'"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

