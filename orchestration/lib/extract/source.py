"""The source side of an extraction: which relation, what it really holds, and the SQL that reads it.

- ``SourceRelation``: schema and name of one table's source relation (a table or a view), from
  the settings (OPS_SOURCE_SCHEMA, OPS_SOURCE_TABLE_<NAME>).
- ``inspect_columns``: the relation's columns and types as the source reports them; a missing
  relation or a missing SELECT privilege is an ``ExtractError`` naming the setting to fix.
- ``plan_read``: compares what the source has with what the table's spec expects (schema drift):
  a column the models need that is missing or of an incompatible type fails the table's
  extract; a missing optional column is a warning and is left out of every write, so stored
  values are never overwritten with NULL; compatible changes (json/jsonb, int/bigint, an enum,
  a timestamp without time zone read as UTC) are cast to the raw type.
- ``ReadPlan``: the SELECT list, the row hash (md5 of the row as the source prints it), the day
  bucket and the scope predicates, in the source's dialect (PostgreSQL or DuckDB).

Only SQL text is built here; running it is the readers' and the engine's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from orchestration.lib import settings
from orchestration.lib.extract.raw_schema import TS, TableSpec

SOURCE_ALIAS = "ops_source"  # the name a DuckDB source file is attached under
NULL_TOKEN = "\\N"


class ExtractError(RuntimeError):
    """A problem with one source table that stops its extract (and only its extract)."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ts_literal(value: datetime) -> str:
    return f"timestamptz '{value.isoformat()}'"


# ---------------------------------------------------------------------------------------------
# where the table lives


@dataclass(frozen=True)
class SourceRelation:
    schema: str | None  # None: the connection's current schema (PostgreSQL) / main (DuckDB)
    name: str
    setting: str  # the OPS_SOURCE_TABLE_<setting> variable that names it

    @classmethod
    def for_spec(cls, spec: TableSpec, schema: str | None = None, name: str | None = None) -> "SourceRelation":
        return cls(schema if schema is not None else settings.source_schema(),
                   name or settings.source_table_name(spec.setting, spec.name), spec.setting)

    def display(self, postgres: bool) -> str:
        return f"{self.schema or ('current schema' if postgres else 'main')}.{self.name}"

    def ref(self, postgres: bool) -> str:
        """The relation as SQL: schema-qualified (DuckDB: inside the attached source file)."""
        if postgres:
            return (f"{quote_ident(self.schema)}.{quote_ident(self.name)}" if self.schema
                    else quote_ident(self.name))
        return f"{SOURCE_ALIAS}.{quote_ident(self.schema or 'main')}.{quote_ident(self.name)}"


# ---------------------------------------------------------------------------------------------
# what the source holds


# a source column's type, as a category the raw types are matched against
TEXT, JSON, JSONB, TIMESTAMPTZ, TIMESTAMP, DATE, INTEGER, BOOLEAN, NUMBER, OTHER = (
    "text", "json", "jsonb", "timestamptz", "timestamp", "date", "integer", "boolean", "number", "other")

_PG_CATEGORIES = {
    "text": TEXT, "varchar": TEXT, "bpchar": TEXT, "name": TEXT, "citext": TEXT, "uuid": TEXT,
    "json": JSON, "jsonb": JSONB, "timestamptz": TIMESTAMPTZ, "timestamp": TIMESTAMP, "date": DATE,
    "int2": INTEGER, "int4": INTEGER, "int8": INTEGER, "bool": BOOLEAN,
    "numeric": NUMBER, "float4": NUMBER, "float8": NUMBER,
}
_DUCKDB_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                    "UBIGINT", "UHUGEINT"}


def _duckdb_category(data_type: str) -> str:
    t = data_type.upper()
    if t.startswith("VARCHAR") or t in ("UUID", "TEXT", "STRING", "CHAR", "BPCHAR"):
        return TEXT
    if t == "JSON":
        return JSON
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return TIMESTAMPTZ
    if t.startswith("TIMESTAMP"):
        return TIMESTAMP
    if t == "DATE":
        return DATE
    if t in _DUCKDB_INTEGERS:
        return INTEGER
    if t == "BOOLEAN":
        return BOOLEAN
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return NUMBER
    return OTHER


@dataclass(frozen=True)
class SourceColumn:
    name: str
    data_type: str  # as the source names it
    category: str


def inspect_columns(conn, relation: SourceRelation, postgres: bool) -> dict[str, SourceColumn]:
    """The relation's columns (tables, views and materialized views alike), in order.
    ``conn`` runs one query and returns its rows: ``conn(sql, params) -> list[tuple]``."""
    where = relation.display(postgres)
    if postgres:
        found = conn(
            "select c.oid, c.relkind, has_table_privilege(c.oid, 'SELECT') from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = coalesce(%s, current_schema()) and c.relname = %s "
            "and c.relkind in ('r', 'v', 'm', 'f', 'p')", (relation.schema, relation.name))
        if not found:
            raise ExtractError(
                f"source relation {where} not found: set OPS_SOURCE_TABLE_{relation.setting} (and "
                f"OPS_SOURCE_SCHEMA) to the table or view that holds it")
        oid, _, can_select = found[0]
        if not can_select:
            raise ExtractError(f"no SELECT privilege on source relation {where}: grant it to the extract role")
        rows = conn(
            "select a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory "
            "from pg_attribute a join pg_type t on t.oid = a.atttypid "
            "where a.attrelid = %s and a.attnum > 0 and not a.attisdropped order by a.attnum", (oid,))
        return {name: SourceColumn(name, display, "text" if category == "E" else _PG_CATEGORIES.get(typname, OTHER))
                for name, display, typname, category in rows}
    rows = conn(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = ? and table_schema = ? and table_name = ? order by ordinal_position",
        (SOURCE_ALIAS, relation.schema or "main", relation.name))
    if not rows:
        raise ExtractError(
            f"source relation {where} not found: set OPS_SOURCE_TABLE_{relation.setting} (and "
            f"OPS_SOURCE_SCHEMA) to the table or view that holds it")
    return {name: SourceColumn(name, dtype, _duckdb_category(dtype)) for name, dtype in rows}


# raw type -> source categories that convert to it without losing meaning
_COMPATIBLE = {
    "text": None,  # anything has a text form
    TS: {TIMESTAMPTZ, TIMESTAMP, DATE},
    "integer": {INTEGER},
    "bigint": {INTEGER},
    "boolean": {BOOLEAN},
}


def _compatible(raw_type: str, category: str) -> bool:
    allowed = _COMPATIBLE.get(raw_type)
    return allowed is None or category in allowed


# ---------------------------------------------------------------------------------------------
# what to read, and how


@dataclass
class Drift:
    """How the source differs from the spec, and from its last observation."""

    missing_optional: list[str] = field(default_factory=list)
    incompatible_optional: list[str] = field(default_factory=list)  # "column (type)"
    converted: list[str] = field(default_factory=list)  # "column: timestamp without time zone read as UTC"
    added: list[str] = field(default_factory=list)  # "column (type)", since the last observation
    dropped: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)  # "column: old -> new"
    unread: list[str] = field(default_factory=list)  # source columns the extract does not read

    @property
    def warnings(self) -> list[str]:
        out = [f"optional column missing in the source (stored values kept, new rows NULL): {c}"
               for c in self.missing_optional]
        out += [f"optional column of an incompatible type, not read: {c}" for c in self.incompatible_optional]
        out += [f"column added in the source since the last run: {c}" for c in self.added]
        out += [f"column dropped from the source since the last run: {c}" for c in self.dropped]
        out += [f"column retyped in the source since the last run: {c}" for c in self.retyped]
        return out


@dataclass
class ReadPlan:
    """The SQL that reads one table from its source, in the source's dialect."""

    spec: TableSpec
    relation: SourceRelation
    postgres: bool  # the source's dialect
    columns: dict[str, SourceColumn]  # spec column -> its source column, for the columns read
    drift: Drift

    @property
    def present(self) -> list[str]:
        return [c for c in self.spec.column_names if c in self.columns]

    def json_needs_validation(self, column: str) -> bool:
        """Only jsonb guarantees JSON PostgreSQL can parse (a json column keeps \\u0000)."""
        return column in self.columns and self.columns[column].category != JSONB

    # -- expressions -----------------------------------------------------------------------

    def value(self, column: str) -> str:
        """The column converted to its raw type (NULL of that type when the source lacks it)."""
        raw_type = self.spec.column(column).type
        source = self.columns.get(column)
        q = quote_ident(column)
        if source is None:
            return f"cast(null as {raw_type})"
        if raw_type == TS:
            if source.category == TIMESTAMP:
                return f"({q} at time zone 'UTC')" if self.postgres else f"timezone('UTC', {q})"
            if source.category == DATE:
                return (f"(cast({q} as timestamp) at time zone 'UTC')" if self.postgres
                        else f"timezone('UTC', cast({q} as timestamp))")
            return q
        if raw_type == "text":
            return f"{q}::text" if self.postgres else f"cast({q} as varchar)"
        if raw_type in ("integer", "bigint") and source.category == INTEGER:
            return f"cast({q} as {raw_type})"
        return q

    def _row(self, column: str) -> str:
        """The column as the inner read selected it (alias ``t``)."""
        return f"t.{quote_ident(column)}"

    def canonical_text(self, column: str) -> str:
        """The column's text in the row hash, NULL as \\N. Timestamps print in UTC: every source
        session runs with time zone UTC and ISO dates (readers.py), and a hash is only ever
        compared with one the same source computed."""
        text = f"cast({self._row(column)} as text)" if self.postgres else f"cast({self._row(column)} as varchar)"
        return f"coalesce({text}, '{NULL_TOKEN}')"

    def row_hash(self) -> str:
        """A 64-bit hash of the row as the source prints it, over the columns the source has, as 16
        hex digits. The source's own fast hash (PostgreSQL's hashtextextended, DuckDB's hash):
        md5 doubled the server's cost of a full read (measured: 1M events, 2.3 s plain, 4.8 s
        with md5, 3.3 s with hashtextextended)."""
        text = "concat_ws('|', " + ", ".join(self.canonical_text(c) for c in self.present) + ")"
        digest = f"to_hex(hashtextextended({text}, 0))" if self.postgres else f"to_hex(hash({text}))"
        return f"lpad({digest}, 16, '0')"

    def bucket(self) -> str:
        """The reconcile bucket of a row: its UTC day as a day number, or none / infinity / -infinity."""
        if self.spec.partition is None:
            return "'all'"
        return bucket_sql(self._row(self.spec.partition), self.postgres)

    def inner_read(self, scope: "Scope") -> str:
        """The rows of the scope with every spec column converted to its raw type. OFFSET 0 keeps
        PostgreSQL from inlining it: each value (a jsonb printed as text, above all) is computed
        once, for the column and for the hash."""
        where = scope.predicate(self.value(self.spec.cursor),
                                self.value(self.spec.partition) if self.spec.partition else None)
        values = ", ".join(f"{self.value(c.name)} as {quote_ident(c.name)}" for c in self.spec.columns)
        return (f"select {values} from {self.relation.ref(self.postgres)}"
                + ("" if where == "true" else f" where {where}") + " offset 0")

    def select_list(self, *, timestamps_as_text: bool = False, nonfinite_columns: bool = False) -> str:
        """Every spec column in order, then ``_row_hash``, over the inner read ``t``.
        ``timestamps_as_text``: for a CSV hop (infinity survives as text); ``nonfinite_columns``:
        one ``_nf_<column>`` text column per timestamp, holding ±infinity as text (ADBC's Arrow
        conversion garbles them)."""
        parts = []
        for column in self.spec.columns:
            value = self._row(column.name)
            if timestamps_as_text and column.type == TS:
                value = f"cast({value} as varchar)"
            parts.append(f"{value} as {quote_ident(column.name)}")
        parts.append(f"{self.row_hash()} as _row_hash")
        if nonfinite_columns:
            for column in self.spec.timestamp_columns:
                if column in self.columns:
                    value = self._row(column)
                    parts.append(f"case when not isfinite({value}) then cast({value} as text) end "
                                 f"as {quote_ident('_nf_' + column)}")
        return ", ".join(parts)

    def query(self, scope: "Scope", **select_options) -> str:
        return f"select {self.select_list(**select_options)} from ({self.inner_read(scope)}) as t"

    def bucket_counts_query(self) -> str:
        """Rows per reconcile bucket in the source, without reading the rows' values (what a
        sliced full refresh plans its slices from)."""
        partition = bucket_sql(self.value(self.spec.partition), self.postgres)
        return f"select {partition} as bucket, count(*) from {self.relation.ref(self.postgres)} group by 1"

    def duplicate_keys_query(self) -> str:
        """How many keys the source holds more than once (a NULL key counts when repeated)."""
        return (f"select count(*) from (select {self.value(self.spec.key)} as k from "
                f"{self.relation.ref(self.postgres)} group by 1 having count(*) > 1) as repeated")

    def bucket_stats_query(self, scope: "Scope") -> str:
        """Rows and hash sum per reconcile bucket, in the source."""
        return (f"select bucket, count(*), cast(sum(h) as text) from ("
                f"select {self.bucket()} as bucket, {hash60_sql(self.row_hash(), self.postgres)} as h "
                f"from ({self.inner_read(scope)}) as t) as rows_ group by bucket")


def bucket_sql(ts: str, postgres: bool) -> str:
    if postgres:
        day = f"cast(cast(({ts} at time zone 'UTC') as date) - date '1970-01-01' as text)"
        return f"case when {ts} is null then 'none' when not isfinite({ts}) then cast({ts} as text) else {day} end"
    day = f"cast(cast(timezone('UTC', {ts}) as date) - date '1970-01-01' as varchar)"
    return f"case when {ts} is null then 'none' when not isfinite({ts}) then cast({ts} as varchar) else {day} end"


def hash60_sql(md5_hex: str, postgres: bool) -> str:
    """The first 60 bits of an md5 hex digest as a bigint: sums of these compare row sets."""
    if postgres:
        return f"('x' || substr({md5_hex}, 1, 15))::bit(60)::bigint"
    return f"cast('0x' || substr({md5_hex}, 1, 15) as bigint)"


def plan_read(spec: TableSpec, relation: SourceRelation, columns: dict[str, SourceColumn], postgres: bool,
              previous: dict[str, str] | None = None) -> ReadPlan:
    """Match the source's columns to the spec; raise ExtractError for what the models need.
    ``previous``: column -> data type as last observed (None: first observation)."""
    where = relation.display(postgres)
    read: dict[str, SourceColumn] = {}
    drift = Drift()
    errors = []
    for column in spec.columns:
        source = columns.get(column.name)
        if source is None:
            if column.needed:
                errors.append(f"column {column.name!r} is missing")
            else:
                drift.missing_optional.append(column.name)
            continue
        if not _compatible(column.type, source.category):
            if column.needed:
                errors.append(f"column {column.name!r} has type {source.data_type}, which cannot be read as "
                              f"{column.type}")
            else:
                drift.incompatible_optional.append(f"{column.name} ({source.data_type})")
            continue
        if column.type == TS and source.category in (TIMESTAMP, DATE):
            drift.converted.append(f"{column.name}: {source.data_type} read as UTC")
        read[column.name] = source
    if spec.one_of_needed and not any(c in read for c in spec.one_of_needed):
        errors.append("none of the columns " + ", ".join(repr(c) for c in spec.one_of_needed) + " is there")
    if errors:
        raise ExtractError(f"source relation {where} cannot be extracted: " + "; ".join(errors)
                           + f" (source columns: {', '.join(columns) or 'none'})")
    drift.unread = [c for c in columns if c not in spec.column_names]
    if previous is not None:
        drift.added = [f"{c} ({columns[c].data_type})" for c in columns if c not in previous]
        drift.dropped = [c for c in previous if c not in columns]
        drift.retyped = [f"{c}: {previous[c]} -> {columns[c].data_type}" for c in columns
                         if c in previous and previous[c] != columns[c].data_type]
    return ReadPlan(spec, relation, postgres, read, drift)


# ---------------------------------------------------------------------------------------------
# which rows


@dataclass(frozen=True)
class Scope:
    """A set of source rows, as a predicate on the cursor and partition columns; the same
    predicate selects the raw rows (and quarantined rows) that the read stands for, so that a raw
    row in scope and not read is known to be deleted."""

    label: str
    everything: bool = False
    cursor_from: datetime | None = None  # cursor >= this (or the cursor is NULL)
    partition_from: datetime | None = None  # partition >= this (or NULL), OR-ed with the cursor
    range_from: datetime | None = None  # partition in [range_from, range_to)
    range_to: datetime | None = None
    partition_is_null: bool = False
    partition_equals: str | None = None  # 'infinity' | '-infinity'

    def predicate(self, cursor: str, partition: str | None) -> str:
        if self.everything or (partition is None and self.cursor_from is None):
            return "true"
        if self.range_from is not None or self.range_to is not None:
            assert partition is not None
            parts = []
            if self.range_from is not None:
                parts.append(f"{partition} >= {ts_literal(self.range_from)}")
            if self.range_to is not None:
                parts.append(f"{partition} < {ts_literal(self.range_to)}")
            return "(" + " and ".join(parts) + ")"
        if self.partition_is_null:
            assert partition is not None
            return f"({partition} is null)"
        if self.partition_equals is not None:
            assert partition is not None
            return f"({partition} = timestamptz '{self.partition_equals}')"
        ors = []
        if self.cursor_from is not None:
            ors += [f"{cursor} >= {ts_literal(self.cursor_from)}", f"{cursor} is null"]
        if self.partition_from is not None and partition is not None:
            if partition == cursor and self.cursor_from is not None:
                # one column: the earlier bound covers both
                ors[0] = f"{cursor} >= {ts_literal(min(self.cursor_from, self.partition_from))}"
            else:
                ors += [f"{partition} >= {ts_literal(self.partition_from)}", f"{partition} is null"]
        return "(" + " or ".join(dict.fromkeys(ors)) + ")"


_DAY_BUCKET = re.compile(r"^-?\d+$")


def is_day_bucket(bucket: str) -> bool:
    return bool(_DAY_BUCKET.match(bucket))
