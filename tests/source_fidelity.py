"""Test helpers: does raw hold exactly what the source holds?

``assert_raw_equals_source`` reads each table straight from the source (its own SQL, not the
extractor's) and from the warehouse, and checks: every source key is either a live raw row with
the same values or an open quarantine entry; every live raw row exists in the source; every raw
row marked deleted is gone from the source. Timestamps are compared as UTC text with
microseconds (±infinity as such), so no driver conversion can hide a difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import psycopg

from orchestration.lib.extract.raw_schema import TABLES, TableSpec
from orchestration.lib.settings import Location


def run_sql(loc: Location, sql: str, params=None) -> list[tuple]:
    """One statement on a source or warehouse (autocommit); the rows if it returns any."""
    if loc.is_postgres:
        with psycopg.connect(loc.dsn, autocommit=True) as conn:
            conn.execute("set timezone = 'UTC'")
            cur = conn.execute(sql.replace("?", "%s") if params else sql, params)
            return cur.fetchall() if cur.description else []
    conn = duckdb.connect(str(loc.path))
    try:
        conn.execute("set timezone = 'UTC'")
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def new_locations(kind: str, pg_databases, tmp_path) -> tuple[Location, Location]:
    """A fresh PostgreSQL source with the bot's tables, and an empty warehouse of ``kind``."""
    from orchestration.lib.source.schema import create_source_schema

    source = Location.parse(pg_databases.new("src"))
    create_source_schema(source)
    warehouse = (Location.parse(pg_databases.new("wh")) if kind == "postgres"
                 else Location.parse(str(tmp_path / "wh.duckdb")))
    return source, warehouse


def _text(expr: str, postgres: bool) -> str:
    return f"cast({expr} as text)" if postgres else f"cast({expr} as varchar)"


def _ts_text(expr: str, postgres: bool) -> str:
    if postgres:
        return (f"case when isfinite({expr}) then to_char({expr} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') "
                f"else cast({expr} as text) end")
    return (f"case when isfinite({expr}) then strftime(timezone('UTC', {expr}), '%Y-%m-%d %H:%M:%S.%f') "
            f"else cast({expr} as varchar) end")


def _columns(loc: Location, relation: str, schema: str | None) -> list[str]:
    if loc.is_postgres:
        found = run_sql(loc, "select column_name from information_schema.columns where table_name = %s "
                             "and table_schema = coalesce(%s, current_schema())", (relation, schema))
    else:
        found = run_sql(loc, "select column_name from information_schema.columns where table_name = ? "
                             "and table_schema = ?", (relation, schema or "main"))
    return [r[0] for r in found]


def _select(spec: TableSpec, columns: list[str], postgres: bool) -> str:
    parts = []
    for column in spec.columns:
        q = f'"{column.name}"'
        if column.name not in columns:
            parts.append("null")
        elif column.type == "timestamptz":
            parts.append(_ts_text(q, postgres))
        elif column.type == "text":
            parts.append(_text(q, postgres))
        else:
            parts.append(q)
    return ", ".join(parts)


@dataclass
class TableComparison:
    table: str
    source_rows: int
    raw_live: int
    quarantined: int
    deleted_marked: int


def source_table(loc: Location, spec: TableSpec, relation: str | None = None,
                 schema: str | None = None) -> dict:
    """key -> tuple of the spec columns (NULL where the source lacks the column); NULL keys are
    collected under (None, n)."""
    relation = relation or spec.name
    columns = _columns(loc, relation, schema)
    ref = f'"{schema}"."{relation}"' if schema else f'"{relation}"'
    out: dict = {}
    for n, row in enumerate(run_sql(loc, f"select {_select(spec, columns, loc.is_postgres)} from {ref}")):
        key = row[spec.column_names.index(spec.key)]
        out[key if key is not None else (None, n)] = row
    return out


def raw_table(wh: Location, spec: TableSpec, deleted: bool = False) -> dict:
    cols = _select(spec, spec.column_names, wh.is_postgres)
    where = "is not null" if deleted else "is null"
    found = run_sql(wh, f"select {cols} from raw.{spec.name} where _deleted_at {where}")
    out = {row[spec.column_names.index(spec.key)]: row for row in found}
    assert len(out) == len(found), f"raw.{spec.name}: duplicate keys"
    return out


def open_quarantine(wh: Location, table: str) -> list[tuple]:
    return run_sql(wh, f"select row_key, reason from raw._quarantine where source_table = '{table}' "
                       "and resolved_at is null")


def assert_raw_equals_source(source: Location, warehouse: Location, tables=None, *,
                             relations: dict[str, str] | None = None, schema: str | None = None,
                             ignore_columns: dict[str, set[str]] | None = None) -> dict[str, TableComparison]:
    """Raw (live rows + open quarantine) equals the source, table by table; returns the sizes.
    ``ignore_columns``: columns whose raw values are allowed to differ (e.g. kept after the
    source dropped them)."""
    out = {}
    for table in tables or list(TABLES):
        spec = TABLES[table]
        src = source_table(source, spec, (relations or {}).get(table), schema)
        raw = raw_table(warehouse, spec)
        quarantine = open_quarantine(warehouse, table)
        q_keys = {k for k, _ in quarantine if k is not None}
        q_null = sum(1 for k, _ in quarantine if k is None)
        src_keys = {str(k) for k in src if not isinstance(k, tuple)}
        src_null = sum(1 for k in src if isinstance(k, tuple))
        raw_keys = {str(k) for k in raw}
        assert src_null == q_null, f"{table}: {src_null} source rows without a key, {q_null} quarantined"
        missing = src_keys - raw_keys - q_keys
        assert not missing, f"{table}: source keys neither in raw nor quarantined: {sorted(missing)[:5]}"
        extra = raw_keys - src_keys
        assert not extra, f"{table}: live raw rows that the source does not hold: {sorted(extra)[:5]}"
        ignored = {spec.column_names.index(c) for c in (ignore_columns or {}).get(table, set())}
        for key, row in raw.items():
            if str(key) in q_keys:
                continue  # the source's current version is quarantined; raw keeps the last good one
            expected = src[key]
            got = tuple(v for i, v in enumerate(row) if i not in ignored)
            want = tuple(v for i, v in enumerate(expected) if i not in ignored)
            assert got == want, f"{table} {key}: raw {got} != source {want}"
        deleted = raw_table(warehouse, spec, deleted=True)
        still_there = {str(k) for k in deleted} & src_keys
        assert not still_there, f"{table}: marked deleted but in the source: {sorted(still_there)[:5]}"
        out[table] = TableComparison(table, len(src), len(raw), len(quarantine), len(deleted))
    return out
