"""Warehouse-side SQL of one read: refuse bad rows, then merge the rest into the raw table.

A read lands the source rows of one ``Scope`` in a temporary stage (the SELECT list of
source.ReadPlan: every spec column, then ``_row_hash``). ``checked_stage`` adds each row's reject
reason (NULL = good). Then, in this order (all inside the extract's transaction):

1. quarantine: open entries of the scope that are no longer what the source holds are resolved
   (``loaded`` when a good version landed, ``gone`` otherwise); the bad rows read are upserted
   (an entry already open is not counted again: a row is quarantined once);
2. ``_changes``: one row per good key that is new, changed, back after a deletion, or only
   re-hashed (same values, hash over a different column set or from an older release);
3. update / re-hash / insert from ``_changes``, writing only the columns the source has (a column
   missing in the source never overwrites stored values with NULL);
4. deletions: raw rows in the scope whose key the read did not bring back get ``_deleted_at``;
5. snapshots: heartbeats keep one row per distinct state; decisions one row per observed change.

The same SQL runs on DuckDB and PostgreSQL; the few differences are methods of ``Dialect``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestration.lib.extract.raw_schema import RAW_SCHEMA, TS, TableSpec
from orchestration.lib.extract.source import ReadPlan, Scope, bucket_sql, hash60_sql, quote_ident, ts_literal

# an unescaped \u0000 inside JSON text: valid JSON that PostgreSQL's jsonb refuses
_NUL_ESCAPE_RE = r"(^|[^\\])(\\\\)*\\u0000"


@dataclass(frozen=True)
class Dialect:
    postgres: bool

    def invalid_json(self, column: str) -> str:
        if self.postgres:
            return f"({column} is not null and not {RAW_SCHEMA}._is_valid_json({column}))"
        # DuckDB's parser accepts \u0000; PostgreSQL's jsonb (what staging casts to there) does not
        return (f"({column} is not null and (not coalesce(json_valid({column}), false) "
                f"or regexp_matches({column}, '{_NUL_ESCAPE_RE}')))")

    def row_json(self, alias: str, columns: list[str]) -> str:
        cols = ", ".join(f"{alias}.{quote_ident(c)}" for c in columns)
        if self.postgres:
            return f"(select row_to_json(r)::text from (select {cols}) r)"
        return f"cast(to_json(struct_pack({cols})) as varchar)"

    def text(self, expr: str) -> str:
        return f"cast({expr} as text)" if self.postgres else f"cast({expr} as varchar)"

    def temp_table(self, name: str, body: str) -> str:
        return f"create temp table {name} as {body}"


PG_JSON_CHECK_FN = f"""
create or replace function {RAW_SCHEMA}._is_valid_json(value text) returns boolean
language plpgsql immutable as $$
begin
  perform value::jsonb;
  return true;
exception when others then
  return false;
end $$"""


@dataclass
class RejectRules:
    """Why a row is refused, in priority order: the first that holds names the reason."""

    floor: datetime
    future_limit: datetime

    def checks(self, plan: ReadPlan, dialect: Dialect) -> list[tuple[str, str]]:
        """(reason, condition on the stage alias ``s``)."""
        spec = plan.spec
        out = [(f"missing_{c}", f's."{c}" is null') for c in spec.required]
        for column in spec.timestamp_columns:
            if column in plan.columns:
                out.append((f"infinite_{column}", f's."{column}" is not null and not isfinite(s."{column}")'))
                out.append((f"before_floor_{column}", f's."{column}" < {ts_literal(self.floor)}'))
        out += [(f"future_{c}", f's."{c}" > {ts_literal(self.future_limit)}') for c in spec.future_checked]
        out += [(f"invalid_json_{c.name}", dialect.invalid_json(f's."{c.name}"')) for c in spec.columns
                if c.json and plan.json_needs_validation(c.name)]
        out.append((f"duplicate_{spec.key}", "s._key_copies > 1"))
        return out

    def case(self, plan: ReadPlan, dialect: Dialect) -> str:
        whens = " ".join(f"when {cond} then '{reason}'" for reason, cond in self.checks(plan, dialect))
        return f"case {whens} end"


@dataclass
class MergeCounts:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    restored: int = 0
    rehashed: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined_by_reason: dict[str, int] | None = None
    quarantined_new: int = 0  # bad rows not already open in the quarantine
    quarantine_resolved: int = 0
    snapshots: int = 0
    newest_cursor: datetime | None = None  # the newest cursor value among the good rows read
    slices: int = 0  # a whole-table read merged slice by slice (engine._Reader._slices); 0: at once

    def add(self, other: "MergeCounts") -> None:
        for name in ("read", "inserted", "updated", "restored", "rehashed", "unchanged", "deleted",
                     "quarantined_new", "quarantine_resolved", "snapshots", "slices"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        newest = [c for c in (self.newest_cursor, other.newest_cursor) if c is not None]
        self.newest_cursor = max(newest) if newest else None
        merged = dict(self.quarantined_by_reason or {})
        for reason, n in (other.quarantined_by_reason or {}).items():
            merged[reason] = merged.get(reason, 0) + n
        self.quarantined_by_reason = merged

    @property
    def quarantined(self) -> int:
        return sum((self.quarantined_by_reason or {}).values())


class MergeSql:
    """The SQL of one read's merge; ``run`` executes it on the warehouse connection."""

    def __init__(self, plan: ReadPlan, dialect: Dialect, rules: RejectRules, scope: Scope, stamp: datetime,
                 run_id: str, stage: str) -> None:
        self.plan = plan
        self.spec: TableSpec = plan.spec
        self.d = dialect
        self.rules = rules
        self.scope = scope
        self.stamp = ts_literal(stamp)
        self.run_id = run_id.replace("'", "")
        self.stage = stage
        self.checked = f"{stage}_checked"
        self.changes = f"{stage}_changes"
        self.bad = f"{stage}_bad"
        self.target = f"{RAW_SCHEMA}.{self.spec.name}"
        self.key = quote_ident(self.spec.key)
        self.present = plan.present

    # -- shared pieces -------------------------------------------------------------------------

    def key_text(self, alias: str) -> str:
        return self.d.text(f"{alias}.{self.key}")

    def scope_on(self, alias: str) -> str:
        spec = self.spec
        partition = f'{alias}."{spec.partition}"' if spec.partition else None
        return self.scope.predicate(f'{alias}."{spec.cursor}"', partition)

    def scope_on_quarantine(self, alias: str) -> str:
        return self.scope.predicate(f"{alias}.cursor_value",
                                    f"{alias}.partition_value" if self.spec.partition else None)

    def stage_ddl(self) -> str:
        cols = ", ".join(f"{quote_ident(c.name)} {c.type}" for c in self.spec.columns)
        return f"create temp table {self.stage} ({cols}, _row_hash text)"

    def land_into_duckdb(self, target: str, *, nonfinite: bool, loaded_at: bool = False) -> str:
        """``insert … select`` from the ``{relation}`` a reader streams; ±infinity comes back from
        the ``_nf_`` columns when the read came through ADBC (``nonfinite``)."""
        cols = []
        for column in self.spec.columns:
            value = f"s.{quote_ident(column.name)}"
            if nonfinite and column.type == TS and column.name in self.plan.columns:
                value = f"coalesce(cast(s.{quote_ident('_nf_' + column.name)} as timestamptz), {value})"
            cols.append(value)
        names = ", ".join(quote_ident(c.name) for c in self.spec.columns)
        extra_names, extra_values = (", _loaded_at", f", {self.stamp}") if loaded_at else ("", "")
        return (f"insert into {target} ({names}, _row_hash{extra_names}) "
                f"select {', '.join(cols)}, s._row_hash{extra_values} from {{relation}} s")

    # -- the steps ----------------------------------------------------------------------------

    def checked_stage(self) -> str:
        reject = self.rules.case(self.plan, self.d)
        return self.d.temp_table(self.checked, f"""
            select s.*, {reject} as _reject from (
              select st.*, count(*) over (partition by st.{self.key}) as _key_copies from {self.stage} st) s""")

    def bad_rows(self) -> str:
        """The bad rows read, one per quarantine identity (row data hash, reason)."""
        row_json = self.d.row_json("s", self.spec.column_names)
        bucket = bucket_sql(f's."{self.spec.partition}"', self.d.postgres) if self.spec.partition else "'all'"
        return self.d.temp_table(self.bad, f"""
            select * from (
              select b.*, row_number() over (partition by b._data_hash, b._reject order by b.row_key) as _n
              from (
                select {self.key_text('s')} as row_key, s._reject, {row_json} as row_data,
                       md5({row_json}) as _data_hash, s._row_hash as source_hash,
                       s."{self.spec.cursor}" as cursor_value,
                       {f's."{self.spec.partition}"' if self.spec.partition else 'cast(null as timestamptz)'}
                         as partition_value,
                       {bucket} as partition_key
                from {self.checked} s where s._reject is not null) b) x
            where _n = 1""")

    def count_new_quarantine(self) -> str:
        return f"""
            select count(*) from {self.bad} b where not exists (
              select 1 from {RAW_SCHEMA}._quarantine q
              where q.source_table = '{self.spec.name}' and q._row_hash = b._data_hash and q.reason = b._reject
                and q.resolved_at is null)"""

    def resolve_quarantine(self) -> str:
        """Open entries this read stands for that are no longer what the source holds."""
        good_keys = f"select {self.key_text('g')} from {self.checked} g where g._reject is null"
        return f"""
            update {RAW_SCHEMA}._quarantine as q set resolved_at = {self.stamp}, last_run_id = '{self.run_id}',
              resolution = case when q.row_key in ({good_keys}) then 'loaded' else 'gone' end
            where q.source_table = '{self.spec.name}' and q.resolved_at is null
              and (q.row_key in (select {self.key_text('r')} from {self.checked} r where r.{self.key} is not null)
                   or {self.scope_on_quarantine('q')})
              and not exists (select 1 from {self.bad} b where b._data_hash = q._row_hash and b._reject = q.reason)"""

    def upsert_quarantine(self) -> str:
        return f"""
            insert into {RAW_SCHEMA}._quarantine
              (source_table, row_key, reason, row_data, _row_hash, first_seen_at, last_seen_at, source_hash,
               cursor_value, partition_value, partition_key, first_run_id, last_run_id, resolved_at, resolution)
            select '{self.spec.name}', row_key, _reject, row_data, _data_hash, {self.stamp}, {self.stamp},
                   source_hash, cursor_value, partition_value, partition_key, '{self.run_id}', '{self.run_id}',
                   cast(null as timestamptz), cast(null as text)
            from {self.bad}
            on conflict (source_table, _row_hash, reason) do update set
              last_seen_at = excluded.last_seen_at, last_run_id = excluded.last_run_id,
              source_hash = excluded.source_hash, cursor_value = excluded.cursor_value,
              partition_value = excluded.partition_value, partition_key = excluded.partition_key,
              row_key = excluded.row_key, resolved_at = null, resolution = null"""

    def changes_table(self) -> str:
        same_values = " and ".join(f't.{quote_ident(c)} is not distinct from s.{quote_ident(c)}'
                                   for c in self.present if c != self.spec.key) or "true"
        return self.d.temp_table(self.changes, f"""
            select s.{self.key} as key_value,
                   case when t.{self.key} is null then 'inserted'
                        when t._deleted_at is not null then 'restored'
                        when {same_values} then 'rehashed'
                        else 'updated' end as change
            from {self.checked} s left join {self.target} t on t.{self.key} = s.{self.key}
            where s._reject is null
              and (t.{self.key} is null or t._deleted_at is not null or t._row_hash is distinct from s._row_hash)""")

    def _changed_rows(self, kinds: tuple[str, ...]) -> str:
        in_list = ", ".join(f"'{k}'" for k in kinds)
        return (f"(select s.* from {self.checked} s join {self.changes} c on c.key_value = s.{self.key} "
                f"where c.change in ({in_list}))")

    def update_changed(self) -> str:
        sets = ", ".join(f"{quote_ident(c)} = u.{quote_ident(c)}" for c in self.present if c != self.spec.key)
        sets = (sets + ", " if sets else "") + f"_row_hash = u._row_hash, _deleted_at = null, _loaded_at = {self.stamp}"
        return f"""update {self.target} as t set {sets}
                   from {self._changed_rows(('updated', 'restored'))} u where t.{self.key} = u.{self.key}"""

    def rehash(self) -> str:
        """Same values, another hash: record it without calling it a change (no _loaded_at bump)."""
        return f"""update {self.target} as t set _row_hash = u._row_hash
                   from {self._changed_rows(('rehashed',))} u where t.{self.key} = u.{self.key}"""

    def insert_new(self) -> str:
        cols = ", ".join(quote_ident(c) for c in self.spec.column_names)
        vals = ", ".join(f"u.{quote_ident(c)}" for c in self.spec.column_names)
        return f"""insert into {self.target} ({cols}, _row_hash, _loaded_at)
                   select {vals}, u._row_hash, {self.stamp} from {self._changed_rows(('inserted',))} u"""

    def mark_deleted(self) -> str:
        return f"""
            update {self.target} as t set _deleted_at = {self.stamp}, _loaded_at = {self.stamp}
            where t._deleted_at is null and {self.scope_on('t')}
              and not exists (select 1 from {self.checked} s where s.{self.key} = t.{self.key})"""

    def record_deletions(self) -> str:
        # in scope: the slices of one full refresh share its stamp
        return (f"insert into {self.changes} (key_value, change) select t.{self.key}, 'deleted' from {self.target} t "
                f"where t._deleted_at = {self.stamp} and {self.scope_on('t')}")

    def insert_snapshots(self) -> str | None:
        spec = self.spec
        if not spec.snapshot_table:
            return None
        snap = f"{RAW_SCHEMA}.{spec.snapshot_table}"
        cols = ", ".join(quote_ident(c) for c in spec.column_names)
        tcols = ", ".join(f"t.{quote_ident(c)}" for c in spec.column_names)
        if spec.snapshot_kind == "changes":
            return f"""insert into {snap} ({cols}, _observed_at, _row_hash, _change)
                       select {tcols}, {self.stamp}, coalesce(t._row_hash, ''), c.change
                       from {self.changes} c join {self.target} t on t.{self.key} = c.key_value
                       where c.change <> 'rehashed'"""
        return f"""insert into {snap} ({cols}, _observed_at, _row_hash)
                   select {tcols}, {self.stamp}, t._row_hash
                   from {self.changes} c join {self.target} t on t.{self.key} = c.key_value
                   where c.change in ('inserted', 'updated', 'restored') and t._row_hash is not null
                     and not exists (select 1 from {snap} x where x.{self.key} = t.{self.key}
                                     and x._row_hash = t._row_hash)"""

    def drop_temp(self) -> list[str]:
        return [f"drop table if exists {t}" for t in (self.stage, self.checked, self.bad, self.changes)]


def run_merge(wh, sql: MergeSql) -> MergeCounts:
    """Steps 1–5 on a stage already filled; returns what changed."""
    counts = MergeCounts()
    wh.execute(sql.checked_stage())
    counts.read = scalar(wh, f"select count(*) from {sql.checked}")
    by_reason = rows(wh, f"select _reject, count(*) from {sql.checked} where _reject is not null group by 1")
    counts.quarantined_by_reason = {reason: int(n) for reason, n in by_reason}
    counts.newest_cursor = scalar(wh, f'select max("{sql.spec.cursor}") from {sql.checked} where _reject is null')
    wh.execute(sql.bad_rows())
    counts.quarantined_new = scalar(wh, sql.count_new_quarantine())
    counts.quarantine_resolved = exec_count(wh, sql.resolve_quarantine())
    if counts.quarantined_by_reason:
        wh.execute(sql.upsert_quarantine())
    wh.execute(sql.changes_table())
    by_change = dict(rows(wh, f"select change, count(*) from {sql.changes} group by 1"))
    counts.inserted = int(by_change.get("inserted", 0))
    counts.updated = int(by_change.get("updated", 0))
    counts.restored = int(by_change.get("restored", 0))
    counts.rehashed = int(by_change.get("rehashed", 0))
    if counts.updated or counts.restored:
        wh.execute(sql.update_changed())
    if counts.rehashed:
        wh.execute(sql.rehash())
    if counts.inserted:
        wh.execute(sql.insert_new())
    counts.deleted = exec_count(wh, sql.mark_deleted())
    if counts.deleted:
        wh.execute(sql.record_deletions())
    snapshots = sql.insert_snapshots()
    if snapshots:
        counts.snapshots = exec_count(wh, snapshots)
    counts.unchanged = (counts.read - counts.quarantined - counts.inserted - counts.updated - counts.restored)
    for statement in sql.drop_temp():
        wh.execute(statement)
    return counts


# ---------------------------------------------------------------------------------------------
# first load of an empty raw table: land straight into it (no stage, indexes built once after)


def first_load_fixups(wh, sql: MergeSql, loaded_rows: int, *, find_duplicates: bool = True) -> MergeCounts:
    """The rows of this read sit in the raw table itself: move the bad ones to the quarantine
    (first_load_snapshots then records the rest). ``find_duplicates=False`` leaves duplicated keys to the
    primary key's build (PostgreSQL: see the engine), which sorts the keys anyway."""
    counts = MergeCounts(read=loaded_rows)
    reject = sql.rules.case(sql.plan, sql.d)
    copies = "1"
    dups = f"{sql.stage}_dups"
    if find_duplicates:  # by a grouping: a rare set, looked up per row below (a window costs more)
        wh.execute(sql.d.temp_table(dups, f"select {sql.key} as key_value from {sql.target} "
                                          f"group by {sql.key} having count(*) > 1"))
        copies = f"case when t.{sql.key} in (select key_value from {dups}) then 2 else 1 end"
    wh.execute(sql.d.temp_table(sql.checked, f"""
        select s.*, {reject} as _reject from (
          select t.*, {copies} as _key_copies from {sql.target} t) s
        where {reject} is not null"""))
    if find_duplicates:
        wh.execute(f"drop table {dups}")
    by_reason = rows(wh, f"select _reject, count(*) from {sql.checked} group by 1")
    counts.quarantined_by_reason = {reason: int(n) for reason, n in by_reason}
    if counts.quarantined_by_reason:
        wh.execute(sql.bad_rows())
        counts.quarantined_new = scalar(wh, sql.count_new_quarantine())
        wh.execute(sql.upsert_quarantine())
        # every copy of a refused key goes (a duplicated key has no single right version)
        wh.execute(f"delete from {sql.target} where {sql.d.text(sql.key)} in "
                   f"(select {sql.key_text('c')} from {sql.checked} c where c.{sql.key} is not null)"
                   f" or {sql.key} is null")
    counts.inserted = loaded_rows - counts.quarantined
    for statement in sql.drop_temp():
        wh.execute(statement)
    return counts


def first_load_snapshots(wh, sql: MergeSql) -> int:
    """Every row of a first load is a first sight: its snapshot (once the keys are unique)."""
    snapshots = sql.insert_snapshots()
    if not snapshots:
        return 0
    wh.execute(sql.d.temp_table(sql.changes, f"select {sql.key} as key_value, 'inserted' as change "
                                             f"from {sql.target}"))
    added = exec_count(wh, snapshots)
    wh.execute(f"drop table if exists {sql.changes}")
    return added


# ---------------------------------------------------------------------------------------------
# the raw side of the reconciliation


def raw_bucket_stats_sql(spec: TableSpec, dialect: Dialect, scope: Scope) -> str:
    """Rows and hash sum per bucket of what raw says the source holds: live rows (a row whose
    current source version is quarantined counts through its quarantine entry) and open
    quarantine entries."""
    key = quote_ident(spec.key)
    partition = f't."{spec.partition}"' if spec.partition else None
    bucket = bucket_sql(partition, dialect.postgres) if partition else "'all'"
    raw_scope = scope.predicate(f't."{spec.cursor}"', partition)
    q_scope = scope.predicate("q.cursor_value", "q.partition_value" if spec.partition else None)
    return f"""
        select bucket, count(*), {dialect.text('sum(h)')} from (
          select {bucket} as bucket, {hash60_sql('t._row_hash', dialect.postgres)} as h
          from {RAW_SCHEMA}.{spec.name} t
          where t._deleted_at is null and {raw_scope}
            and not exists (select 1 from {RAW_SCHEMA}._quarantine oq
                            where oq.source_table = '{spec.name}' and oq.resolved_at is null
                              and oq.row_key = {dialect.text('t.' + key)})
          union all
          select q.partition_key, {hash60_sql('q.source_hash', dialect.postgres)}
          from {RAW_SCHEMA}._quarantine q
          where q.source_table = '{spec.name}' and q.resolved_at is null and {q_scope}
        ) as rows_ group by bucket"""


# ---------------------------------------------------------------------------------------------
# tiny helpers


def scalar(conn, sql: str):
    value = conn.execute(sql).fetchall()[0][0]
    return int(value) if isinstance(value, int) else value


def rows(conn, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


def exec_count(conn, sql: str) -> int:
    """Rows affected by a DML statement, on either engine."""
    import psycopg

    cur = conn.execute(sql)
    if isinstance(cur, psycopg.Cursor):
        return max(cur.rowcount, 0)
    result = cur.fetchall()  # DuckDB returns the count as a result row
    return int(result[0][0]) if result else 0


def day_start(day_number: int) -> datetime:
    from datetime import timezone

    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=day_number)
