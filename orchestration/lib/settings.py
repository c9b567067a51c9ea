"""Settings from the environment, in one place.

A location is a PostgreSQL DSN (``postgresql://…`` or libpq's ``key=value`` form) or a DuckDB
file (``duckdb:///path`` or a plain path). Every libpq parameter of a DSN (sslmode, sslrootcert,
a socket directory as host, options, …) reaches each client alike: psycopg takes
``Location.conninfo()``, ADBC ``Location.uri()`` and dbt the variables of
``orchestration.lib.dbt_env``; each session also gets the connect, statement and lock timeouts
(``pg_timeouts``). Secrets (passwords inside DSNs) are only ever read from the environment and
are never printed: ``mask_secrets`` masks them in any text, ``Location.redacted()`` shows a
location. A setting that makes no sense (an unknown scheme, a DuckDB file in a folder that does
not exist) is a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("OPS_DATA_DIR", PROJECT_ROOT / "data"))
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

APPLICATION_NAME = "ops_warehouse"  # what pg_stat_activity shows for our sessions (unless the DSN says)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
_KEY_VALUE = re.compile(r"^[A-Za-z_]+\s*=")


@dataclass(frozen=True, repr=False)
class Location:
    kind: str  # "postgres" | "duckdb"
    dsn: str | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, value: str, setting: str = "location") -> "Location":
        """``setting`` names where the value came from (an environment variable, an option), for
        the error message."""
        value = value.strip()
        if not value:
            raise ValueError(f"{setting} is empty: give a postgresql:// DSN or a DuckDB file path")
        scheme = _SCHEME.match(value)
        if scheme:
            name = scheme.group(1).lower()
            if name in ("postgresql", "postgres"):
                return cls(kind="postgres", dsn=_checked_dsn(value, setting))
            if name != "duckdb" or not value.lower().startswith("duckdb://"):
                raise ValueError(f"{setting}: unknown scheme {name}:// in {mask_secrets(value)!r}; give a "
                                 f"postgresql:// DSN, a libpq key=value DSN or a DuckDB file (duckdb:///path or a path)")
            value = value[len("duckdb://"):]
            if not value:
                raise ValueError(f"{setting}: duckdb:// without a file path")
        elif _KEY_VALUE.match(value):
            return cls(kind="postgres", dsn=_checked_dsn(value, setting))
        path = Path(value).expanduser().resolve()
        if path.is_dir():
            raise ValueError(f"{setting}: {path} is a folder, not a DuckDB file")
        if not path.parent.is_dir() and path.parent != DATA_DIR.resolve():
            raise ValueError(f"{setting}: the folder of the DuckDB file {path} does not exist "
                             f"(create it, or fix the path)")
        return cls(kind="duckdb", path=path)

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def redacted(self) -> str:
        if not self.is_postgres:
            return str(self.path)
        assert self.dsn is not None
        return mask_secrets(self.dsn)

    def __repr__(self) -> str:  # a Location in a traceback or a log shows no password
        return f"Location({self.kind}: {self.redacted()})"

    __str__ = redacted

    # --- PostgreSQL sessions -------------------------------------------------------------------

    def params(self) -> dict[str, str]:
        """The DSN's libpq parameters as given (URL or key=value, decoded and unquoted)."""
        assert self.dsn is not None, "not a PostgreSQL location"
        return {k: str(v) for k, v in conninfo_to_dict(self.dsn).items()}

    def session_params(self, application_name: str = APPLICATION_NAME) -> dict[str, str]:
        """The DSN's parameters plus the session settings every connection gets: connect_timeout,
        and statement_timeout/lock_timeout (and jit=off) as ``-c`` options (before the DSN's own ``options``,
        which therefore win, as a connect_timeout in the DSN does), and an application_name."""
        params = self.params()
        timeouts = pg_timeouts()
        params.setdefault("connect_timeout", str(timeouts.connect))
        # jit=off: PostgreSQL's JIT compiles the marts' many-CTE queries, whose row estimates
        # are far off, for seconds to save milliseconds (measured: 9.1 s of a 9.8 s
        # mart_error_correlation on a 1.3M-event warehouse); the bulk paths gain nothing from it
        own = [f"-c statement_timeout={timeouts.statement_ms}", f"-c lock_timeout={timeouts.lock_ms}", "-c jit=off"]
        given = params.get("options") or os.environ.get("PGOPTIONS", "")
        params["options"] = " ".join(own + ([given] if given.strip() else []))
        if "application_name" not in params and not os.environ.get("PGAPPNAME"):
            params["application_name"] = application_name
        return params

    def conninfo(self, application_name: str = APPLICATION_NAME) -> str:
        """For psycopg: a normalised key=value conninfo with the session settings."""
        return make_conninfo("", **self.session_params(application_name))

    def uri(self, application_name: str = APPLICATION_NAME) -> str:
        """For ADBC (it takes a URI only): every parameter in the query string, so a socket
        directory as host, TLS files and options pass as they are."""
        params = self.session_params(application_name)
        return "postgresql://?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def _checked_dsn(value: str, setting: str) -> str:
    try:
        conninfo_to_dict(value)
    except psycopg.Error as exc:
        # the DSN itself is not echoed: a misspelt key (passwrd=…) would show its value
        raise ValueError(f"{setting}: not a valid PostgreSQL DSN: {mask_secrets(str(exc).strip())}") from None
    return value


# ---------------------------------------------------------------------------------------------
# secrets


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^@\s/]*@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?password=)[^&\s#'\"]*")
_KV_SECRET = re.compile(r"(?i)(?<![?&\w])(\w*password\s*=\s*)(?:'(?:\\.|[^'\\])*'?|(?:\\.|[^\s\\])+)")
_MAPPING_SECRET = re.compile(r"(?i)(['\"])(\w*password)\1(\s*:\s*)(['\"])(?:\\.|(?!\4).)*\4")
MASK = "***"


def mask_secrets(text: str, *locations: "Location") -> str:
    """``text`` with every password masked: in a URL's userinfo, a ``?password=`` query parameter,
    libpq's ``password=`` (quoted or not, spaces around ``=``), PGPASSWORD=…, a ``'password': …``
    mapping; and any literal occurrence of the password of ``locations`` and of the configured
    source and warehouse (e.g. echoed inside a driver's error message)."""
    text = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _KV_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _MAPPING_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}"
                                         f"{MASK}{m.group(4)}", text)
    for secret in _known_secrets(locations):
        text = text.replace(secret, MASK)
    return text


def _known_secrets(locations) -> list[str]:
    dsns = [location.dsn for location in locations if location.is_postgres and location.dsn]
    for var in ("OPS_SOURCE_URL", "OPS_WAREHOUSE_URL"):
        value = os.environ.get(var, "").strip()
        if value.lower().startswith(("postgresql://", "postgres://")) or _KEY_VALUE.match(value):
            dsns.append(value)
    found = [os.environ.get("PGPASSWORD", "")]
    for dsn in dsns:
        try:
            found.append(conninfo_to_dict(dsn).get("password") or "")
        except psycopg.Error:
            continue
    # shorter ones would mask innocent text (and are no secret worth the name)
    return sorted({str(p) for p in found if len(str(p)) >= 4}, key=len, reverse=True)


# ---------------------------------------------------------------------------------------------
# PostgreSQL session timeouts


@dataclass(frozen=True)
class PgTimeouts:
    connect: int  # seconds; libpq's connect_timeout (0: wait for ever)
    statement: float  # seconds, 0: off
    lock: float  # seconds, 0: off

    @property
    def statement_ms(self) -> int:
        return int(round(self.statement * 1000))

    @property
    def lock_ms(self) -> int:
        return int(round(self.lock * 1000))


def pg_timeouts() -> PgTimeouts:
    """Every PostgreSQL session's timeouts: OPS_PG_CONNECT_TIMEOUT_SECONDS (default 10),
    OPS_PG_STATEMENT_TIMEOUT_SECONDS (default 1800, 0 = off) and OPS_PG_LOCK_TIMEOUT_SECONDS
    (default 60, 0 = off: a held lock is waited for as long as it is held)."""
    return PgTimeouts(connect=math.ceil(_non_negative_float("OPS_PG_CONNECT_TIMEOUT_SECONDS", "10")),
                      statement=_non_negative_float("OPS_PG_STATEMENT_TIMEOUT_SECONDS", "1800"),
                      lock=_non_negative_float("OPS_PG_LOCK_TIMEOUT_SECONDS", "60"))


def source_location() -> Location:
    return Location.parse(os.environ.get("OPS_SOURCE_URL") or str(DATA_DIR / "source.duckdb"), "OPS_SOURCE_URL")


def warehouse_location() -> Location:
    return Location.parse(os.environ.get("OPS_WAREHOUSE_URL") or str(DATA_DIR / "warehouse.duckdb"),
                          "OPS_WAREHOUSE_URL")


def check_duckdb_folder(path: Path) -> None:
    """A DuckDB file is created only in a folder that exists (the project's data folder, DATA_DIR,
    is made on first use): a typo in a path must not leave folders behind."""
    if path.parent.is_dir():
        return
    if path.parent == DATA_DIR.resolve():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    raise ValueError(f"the folder of the DuckDB file {path} does not exist (create it, or fix the path)")


def overlap_minutes() -> float:
    """How far back each incremental read re-reads, to catch rows committed late."""
    return float(os.environ.get("OPS_EXTRACT_OVERLAP_MINUTES", "30"))


def future_tolerance_minutes() -> float:
    """Rows stamped further than this in the future (source clock) are quarantined."""
    return float(os.environ.get("OPS_FUTURE_TOLERANCE_MINUTES", "60"))


# ---------------------------------------------------------------------------------------------
# memory: DuckDB's buffer pool and the extract's batches

_MEMORY_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KIB|MB|MIB|GB|GIB|TB|TIB)?\s*$", re.IGNORECASE)


def duckdb_memory_limit() -> str:
    """DuckDB's memory_limit for every connection the project opens (and dbt-duckdb's): past it,
    joins, aggregates, sorts and temp tables spill to the temp directory instead of growing the
    process (DuckDB's own default is 80 % of RAM). OPS_DUCKDB_MEMORY_LIMIT, e.g. 1GB, 512MB;
    default 1GB."""
    return _memory_size("OPS_DUCKDB_MEMORY_LIMIT", "1GB")


def extract_duckdb_memory_limit() -> str:
    """The same for an extract's DuckDB connections (the warehouse's, and the in-memory one a
    DuckDB source is attached to for a PostgreSQL warehouse): OPS_EXTRACT_DUCKDB_MEMORY_LIMIT,
    default 192MB — with the drivers, Arrow batches and the interpreter, an extract of 10M
    events then peaks near 400 MB of RSS whatever the table's size."""
    return _memory_size("OPS_EXTRACT_DUCKDB_MEMORY_LIMIT", "192MB")


def _memory_size(var: str, default: str) -> str:
    value = (os.environ.get(var) or default).strip()
    found = _MEMORY_SIZE.match(value)
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"{var} must be a size such as 1GB or 512MB, got {value!r}")
    return f"{found.group(1)}{(found.group(2) or 'B').upper()}"


def duckdb_temp_directory(path: Path | None) -> Path:
    """Where DuckDB spills past its memory limit: OPS_DUCKDB_TEMP_DIRECTORY, else ``<file>.tmp``
    beside the DuckDB file (DuckDB's own choice for a file), else (an in-memory connection) a
    folder in the system's temp directory. DuckDB creates it on the first spill only."""
    given = os.environ.get("OPS_DUCKDB_TEMP_DIRECTORY", "").strip()
    if given:
        return Path(given).expanduser().resolve()
    if path is not None:
        return path.with_name(path.name + ".tmp")
    import tempfile

    return Path(tempfile.gettempdir()) / f"ops_warehouse_duckdb_spill_{os.getuid()}"


def extract_batch_rows() -> int:
    """Rows per batch an extract holds at once between source and warehouse
    (OPS_EXTRACT_BATCH_ROWS, default 100000): the extract's memory does not grow with the table."""
    return _positive_int("OPS_EXTRACT_BATCH_ROWS", 100_000, "rows")


def extract_slice_rows() -> int:
    """Source rows per slice of a full refresh into DuckDB (OPS_EXTRACT_SLICE_ROWS, default
    1000000): each slice of whole days is staged and merged on its own, so the merge's memory
    follows the slice, not the table (one 10M-row merge peaked at 1.3 GB)."""
    return _positive_int("OPS_EXTRACT_SLICE_ROWS", 1_000_000, "rows")


def _positive_int(var: str, default: int, unit: str) -> int:
    value = os.environ.get(var) or str(default)
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{var} must be a whole number of {unit}, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{var} must be >= 1, got {value!r}")
    return number


# ---------------------------------------------------------------------------------------------
# the source relations and change capture


def source_schema() -> str | None:
    """Schema of the bot's tables in the source (OPS_SOURCE_SCHEMA); None: the connection's
    current schema on PostgreSQL (usually public), ``main`` in a DuckDB file."""
    return os.environ.get("OPS_SOURCE_SCHEMA") or None


def source_table_name(setting: str, default: str) -> str:
    """The source relation (a table or a view) of one raw table: OPS_SOURCE_TABLE_<setting>,
    e.g. OPS_SOURCE_TABLE_DECISIONS=content_metadata."""
    return os.environ.get(f"OPS_SOURCE_TABLE_{setting}") or default


def hot_window_days() -> float:
    """Every run re-checks the rows created in the last N days: tables updated in place are re-read
    whole and compared row by row (the bot changes statuses without touching updated_at); the
    event log is compared by per-day counts and hash sums and the days that differ are re-read."""
    return _positive_float("OPS_HOT_WINDOW_DAYS", "3")


def reconcile_interval_hours() -> float:
    """How often every day of every table is compared with the source (counts and hash sums) and
    the days that differ re-read: the full reconcile."""
    return _positive_float("OPS_RECONCILE_INTERVAL_HOURS", "24")


# a notification waits up to one interval plus a lane pass (~30 s) plus what the rule needs to see
# (an error spike crosses "> 25 an hour" in ~2 min): every 5 minutes misses a 5-minute p95, every 2
# keeps it (bench latency, README)
DEFAULT_ALERT_LANE_MINUTES = 2


def alert_lane_minutes() -> int:
    """Every how many minutes the alert fast lane runs (OPS_ALERT_LANE_MINUTES, default 2): extract
    the new rows, build only the models the alert rules read, evaluate the rules. A whole number of
    minutes dividing 60 (the schedule is the cron ``*/N * * * *``, so the lane runs at the same
    minutes of every hour); 0 turns the lane's schedule off (the hourly job alone, as before)."""
    value = (os.environ.get("OPS_ALERT_LANE_MINUTES") or str(DEFAULT_ALERT_LANE_MINUTES)).strip()
    try:
        minutes = int(value)
    except ValueError:
        raise ValueError(f"OPS_ALERT_LANE_MINUTES must be a whole number of minutes, got {value!r}") from None
    if minutes < 0 or (minutes and 60 % minutes):
        raise ValueError(f"OPS_ALERT_LANE_MINUTES must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) "
                         f"or be 0 (off), got {value!r}")
    return minutes


def time_floor() -> datetime:
    """Timestamps before this (a wrong clock, an epoch default) are quarantined."""
    value = os.environ.get("OPS_TIME_FLOOR", "2020-01-01T00:00:00+00:00")
    try:
        floor = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"OPS_TIME_FLOOR must be an ISO timestamp, got {value!r}") from exc
    return floor if floor.tzinfo else floor.replace(tzinfo=timezone.utc)


def _non_negative_float(var: str, default: str) -> float:
    value = os.environ.get(var) or default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{var} must be a number of seconds, got {value!r}") from None
    if number < 0 or math.isinf(number) or math.isnan(number):
        raise ValueError(f"{var} must be >= 0 (0: off), got {value!r}")
    return number


def _positive_float(var: str, default: str) -> float:
    value = os.environ.get(var, default)
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"{var} must be a number, got {value!r}") from exc
    if number <= 0:
        raise ValueError(f"{var} must be > 0, got {value!r}")
    return number
