"""The operations simulator: deterministic, faithful to the source's quirks, incidents as truth,
and the bot's writing habits (habits.py) checked against their own truth records.

Most checks read one 30-day DuckDB simulation (module fixture). PostgreSQL tests each get their own
database on 127.0.0.1:5432, dropped afterwards (conftest's ``pg_databases``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg.types.datetime import TimestamptzLoader

from orchestration.lib.settings import Location
from orchestration.lib.simulator import cli as simulator_cli
from orchestration.lib.simulator import follow, simulate
from orchestration.lib.simulator.catalogue import EVENT_FAMILIES
from orchestration.lib.simulator.generate import Timeline
from orchestration.lib.simulator.habits import BAD_TIME_EVENT_TYPE, HABIT_KINDS, POISON_EVENT_TYPE
from orchestration.lib.simulator.incidents import KINDS
from orchestration.lib.simulator.model import (
    COMMIT_AT,
    DAY,
    HOUR,
    SECOND,
    SITES_WITHOUT_UPDATED_AT,
    UPDATE_SITES,
    SimulationSummary,
    from_us,
    to_us,
)
from orchestration.lib.source.schema import SOURCE_TABLES

END = datetime(2025, 6, 1, tzinfo=timezone.utc)
ORDER_BY = {
    "system_events": "id",
    "job_heartbeats": "job_name",
    "content_generation_metadata_comprehensive": "id",
    "posting_attempts": "id",
    "metrics_scraper_runs": "id",
}


# ---------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------


def duck_rows(path: Path, sql: str, *params: Any) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(sql, list(params)).fetchall()


class _InfinityTimestamptzLoader(TimestamptzLoader):
    """psycopg refuses timestamptz 'infinity' (a bad time the bot writes); read it as text."""

    def load(self, data: Any) -> Any:
        return "infinity" if bytes(data) == b"infinity" else super().load(data)


def pg_connect(location: Location) -> psycopg.Connection:
    conn = psycopg.connect(location.dsn)
    conn.adapters.register_loader("timestamptz", _InfinityTimestamptzLoader)
    conn.execute("set timezone = 'UTC'")
    return conn


def pg_rows(location: Location, sql: str, *params: Any) -> list[tuple]:
    with pg_connect(location) as conn:
        return conn.execute(sql, params or None).fetchall()


def dump(location: Location, tables: tuple[str, ...] = tuple(ORDER_BY)) -> dict[str, list[tuple]]:
    """Source tables, ordered by key, payloads parsed (PostgreSQL re-renders jsonb)."""
    dumped: dict[str, list[tuple]] = {}
    for table in tables:
        sql = f"select * from {table} order by {ORDER_BY[table]}"
        rows = pg_rows(location, sql) if location.is_postgres else duck_rows(location.path, sql)
        dumped[table] = [tuple(_normal(v) for v in row) for row in rows]
    return dumped


def _normal(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, datetime):
        if value.replace(tzinfo=None) == datetime.max:  # DuckDB's rendering of 'infinity'
            return "infinity"
        return value.astimezone(timezone.utc)
    return str(value) if value.__class__.__name__ == "UUID" else value


def habit(truth: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The details of one habit's truth record."""
    return next(record for record in truth if record["kind"] == kind)["details"]


def seed_with(kinds: set[str], days: float) -> int:
    """The first seed whose plan over ``days`` before END holds all these incident kinds."""
    for seed in range(500):
        timeline = Timeline(seed=seed, start=to_us(END) - round(days * DAY), end=to_us(END))
        if kinds <= {i.kind for i in timeline.book.incidents}:
            return seed
    raise AssertionError(f"no seed plans {kinds} in {days} days")


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationSummary]:
    path = tmp_path_factory.mktemp("month") / "source.duckdb"
    summary = simulate(Location.parse(str(path)), days=30, seed=42, end=END)
    return path, summary


@pytest.fixture(scope="module")
def truth_file(month: tuple[Path, SimulationSummary]) -> list[dict[str, Any]]:
    """Everything the truth file holds: the incidents, then the bot's habits."""
    _, summary = month
    assert summary.truth_path is not None
    return json.loads(summary.truth_path.read_text())


@pytest.fixture(scope="module")
def truth(truth_file: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The incidents (the behaviours detectors are scored on)."""
    return [record for record in truth_file if record["kind"] in KINDS]


@pytest.fixture(scope="module")
def habits(truth_file: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in truth_file if record["kind"] in HABIT_KINDS]


@pytest.fixture
def pg_location(pg_databases: Any) -> Location:
    """A fresh database of its own (conftest's ``pg_databases`` drops it afterwards)."""
    return Location.parse(pg_databases.new("sim"))


def windows(truth: list[dict[str, Any]], after: timedelta = timedelta()) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(i["start"]), datetime.fromisoformat(i["end"]) + after) for i in truth]


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_rows_and_another_seed_other_rows(tmp_path: Path) -> None:
    first, second, other = (Location.parse(str(tmp_path / f"{n}.duckdb")) for n in ("a", "b", "c"))
    simulate(first, days=1, seed=5, end=END)
    simulate(second, days=1, seed=5, end=END)
    simulate(other, days=1, seed=6, end=END)
    assert dump(first) == dump(second)
    assert (tmp_path / "a.incidents.json").read_text() == (tmp_path / "b.incidents.json").read_text()
    first_ids = {row[0] for row in dump(first)["system_events"]}
    other_ids = {row[0] for row in dump(other)["system_events"]}
    assert not first_ids & other_ids


def test_postgres_gets_the_same_rows_as_duckdb(tmp_path: Path, pg_location: Location) -> None:
    duck = Location.parse(str(tmp_path / "same.duckdb"))
    simulate(duck, days=1, seed=11, end=END)
    simulate(pg_location, days=1, seed=11, end=END, truth_path=tmp_path / "pg.json")
    assert dump(pg_location) == dump(duck)


# ---------------------------------------------------------------------------------------------
# faithful to the source
# ---------------------------------------------------------------------------------------------


def test_thirty_days_volume_and_timing(month: tuple[Path, SimulationSummary],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, summary = month
    per_day = summary.rows["system_events"] / 30
    with capsys.disabled():
        print(f"\n30-day DuckDB simulation: {summary.rows['system_events']:,} events "
              f"({per_day:,.0f}/day) in {summary.seconds:.1f}s")
    assert 8_000 <= per_day <= 15_000
    assert set(summary.rows) == set(SOURCE_TABLES)
    assert all(summary.rows[t] > 0 for t in SOURCE_TABLES)


def test_every_event_family_is_present(month: tuple[Path, SimulationSummary]) -> None:
    path, _ = month
    missing = [
        (family, pattern)
        for family, patterns in EVENT_FAMILIES.items()
        for pattern in patterns
        if duck_rows(path, "select count(*) from system_events where event_type like ?", pattern)[0][0] == 0
    ]
    assert not missing
    codes = {r[0] for r in duck_rows(path, "select distinct event_data->>'error_code' from system_events "
                                           "where event_type in ('POST_FAILED', 'REPLY_FAILED')")}
    assert {"RATE_LIMITED_429", "PLAYWRIGHT_TIMEOUT", "AUTH_REQUIRED", "TargetClosedError"} <= codes
    reasons = {r[0] for r in duck_rows(path, "select distinct event_data->>'reason' from system_events "
                                             "where event_type = 'POSTING_QUEUE_BLOCKED'")}
    assert {"CIRCUIT_BREAKER", "RATE_LIMIT", "SAFEGUARD_MAX_PER_HOUR", "SAFEGUARD_MIN_INTERVAL",
            "NO_READY_DECISIONS", "GHOST_PROTECTION", "MIGRATION_HEALTH", "POSTING_DISABLED"} <= reasons
    outcomes = {r[0] for r in duck_rows(path, "select distinct event_data->>'outcome_type' from "
                                              "system_events where event_type = 'scheduler_outcome'")}
    assert outcomes == {"DECISION_CREATED", "DENY", "SKIP", "ERROR", "TIMEOUT"}


def test_source_quirks_are_reproduced(month: tuple[Path, SimulationSummary]) -> None:
    path, _ = month
    severities = {r[0] for r in duck_rows(path, "select distinct severity from system_events")}
    assert {None, "notice", "high", "deadlock", "info", "warning", "error", "critical"} <= severities
    in_metadata = duck_rows(path, "select count(*) from system_events where event_data is null "
                                  "and metadata is not null")[0][0]
    assert in_metadata > 0
    components = duck_rows(path, "select distinct component, event_type like 'truth_integrity%' "
                                 "or event_type = 'verification_failed' from system_events "
                                 "where component is not null")
    assert {c for c, _ in components} == {"truth_integrity"} and all(ok for _, ok in components)
    for key in ("error", "error_message", "last_error", "original_error", "primary_error",
                "permit_error", "stack", "stack_trace"):
        found = duck_rows(path, f"select count(*) from system_events where case when "
                                f"json_valid(coalesce(event_data, metadata)) then "
                                f"json_exists(coalesce(event_data, metadata), '$.{key}') end")[0][0]
        assert found > 0, key
    tracker = duck_rows(path, "select event_data from system_events where event_type = "
                              "'error_post_failure' limit 1")[0][0]
    assert set(json.loads(tracker)) == {"component", "error_type", "error_message", "context"}
    assert {"decision_id", "retry_count", "tweet_id", "stack"} <= set(json.loads(tracker)["context"])
    stacks = duck_rows(path, "select min(length(event_data->>'stack')), max(length(event_data->>'stack')) "
                             "from system_events where event_type like '%_job_execution_failed'")[0]
    assert stacks[0] >= 300 and stacks[1] <= 500
    statuses = {r[0] for r in duck_rows(path, "select distinct status from "
                                              "content_generation_metadata_comprehensive")}
    assert {"posted", "failed", "failed_permanent", "skipped", "blocked", "cancelled", "archived"} <= statuses
    attempts = {r[0] for r in duck_rows(path, "select distinct status from posting_attempts")}
    assert {"success", "failure", "failed", "post_succeeded_db_write_failed"} <= attempts
    tweet_ids = duck_rows(path, "select min(length(tweet_id)), max(length(tweet_id)) from "
                                "content_generation_metadata_comprehensive")[0]
    assert tweet_ids == (19, 19)
    threads = duck_rows(path, "select thread_tweet_ids from content_generation_metadata_comprehensive "
                              "where decision_type = 'thread' and tweet_id is not null limit 1")[0][0]
    assert len(json.loads(threads)) >= 3
    scraper = {r[0] for r in duck_rows(path, "select distinct status from metrics_scraper_runs")}
    assert {"completed", "skipped_not_runner", "skipped_memory", "skipped_no_posts",
            "skipped_all_filtered", "error_fetch", "crashed"} == scraper


def test_error_share_in_normal_hours(month: tuple[Path, SimulationSummary],
                                     truth: list[dict[str, Any]]) -> None:
    """About 10-20% of operations fail outside incidents.

    An *operation* is one job run (one ``timer_fired`` event per run of a scheduled job) or one
    posting attempt (one ``posting_attempts`` row). It *errors* when the run failed (it emits
    ``<job>_job_execution_failed``) or the attempt's status is not ``success``. Incident windows,
    and the two hours after each, are left out.
    """
    path, _ = month
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("create temp table incident_windows (s timestamptz, e timestamptz)")
        conn.executemany("insert into incident_windows values (?, ?)", windows(truth, timedelta(hours=2)))
        normal = "not exists (select 1 from incident_windows w where {t} >= w.s and {t} < w.e)"
        runs, failed_runs = conn.execute(
            "select count(*) filter (where event_type = 'timer_fired'), "
            "count(*) filter (where event_type like '%\\_job\\_execution\\_failed' escape '\\') "
            "from system_events where " + normal.format(t="created_at")).fetchone()
        attempts, failed_attempts = conn.execute(
            "select count(*), count(*) filter (where status <> 'success') from posting_attempts "
            "where " + normal.format(t="created_at")).fetchone()
    share = (failed_runs + failed_attempts) / (runs + attempts)
    assert 0.10 <= share <= 0.20, share


def test_daytime_is_busier_than_night(month: tuple[Path, SimulationSummary]) -> None:
    path, _ = month
    day, night = duck_rows(path, "select count(*) filter (where hour(created_at) between 11 and 17), "
                                 "count(*) filter (where hour(created_at) between 23 and 23 or "
                                 "hour(created_at) <= 5) from system_events "
                                 "where event_type in ('POST_SUCCESS', 'REPLY_SUCCESS')")[0]
    assert day > 1.3 * night


# ---------------------------------------------------------------------------------------------
# heartbeats
# ---------------------------------------------------------------------------------------------


def test_heartbeat_counter_and_status_words() -> None:
    """Runs go running -> success/failure/skipped; the counter resets on success; one writer says 'failed'."""
    timeline = Timeline(seed=seed_with({"job_failure_streak"}, 6), start=to_us(END) - 6 * DAY, end=to_us(END))
    for _ in timeline.chunks():
        pass
    words: dict[str, set[str]] = {}
    for name, state in timeline.jobs.items():
        previous = 0
        for _, _, _, status, error, consecutive in state.snapshots:
            words.setdefault(name, set()).add(status)
            if status == "success":
                assert consecutive == 0
            elif status in ("failure", "failed"):
                assert consecutive == previous + 1 and error and len(error) <= 500
            else:
                assert consecutive == previous
                assert status in ("running", "skipped") and (status == "running" or error)
            previous = consecutive
    assert "failed" in words["reply_metrics_scraper"] and "failure" not in words["reply_metrics_scraper"]
    assert all("failed" not in w for n, w in words.items() if n != "reply_metrics_scraper")
    streak = next(i for i in timeline.book.incidents if i.kind == "job_failure_streak")
    longest = max(s[5] for s in timeline.jobs[streak.subject].snapshots)
    assert longest == streak.details["streak_length"] >= 6


def test_heartbeats_are_written_as_of_each_slice_end(tmp_path: Path) -> None:
    location = Location.parse(str(tmp_path / "slices.duckdb"))
    start = END - timedelta(days=2)
    timeline = Timeline(seed=3, start=to_us(start), end=to_us(END))
    for _ in timeline.chunks():
        pass
    cuts = [start + timedelta(hours=h) for h in (0, 7, 19, 33, 48)]
    for index, (lo, hi) in enumerate(pairwise(cuts)):
        simulate(location, days=2, seed=3, end=END, write_from=lo, write_to=hi, reset=index == 0)
        written = {r[0]: r for r in duck_rows(location.path, "select * from job_heartbeats")}
        for name, state in timeline.jobs.items():
            expected = state.as_of(to_us(hi))
            if expected is None:
                assert name not in written
                continue
            row = written[name]
            assert (row[6], row[3], row[5]) == (from_us(expected[0]), expected[3], expected[5])
            assert row[6] < hi
        assert max(r[6] for r in written.values()) > hi - timedelta(minutes=10)


# ---------------------------------------------------------------------------------------------
# incidents and ground truth
# ---------------------------------------------------------------------------------------------


def test_incidents_are_recorded_as_truth_and_spread_out(truth: list[dict[str, Any]]) -> None:
    assert all(set(i) == {"incident_id", "kind", "start", "end", "subject", "details"} for i in truth)
    kinds = [i["kind"] for i in truth]
    assert all(kinds.count(kind) >= 2 for kind in KINDS)
    spans = sorted(windows(truth))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
    assert all(start < end for start, end in spans)
    gaps = [b - a for (a, _), (b, _) in pairwise(spans)]
    assert max(gaps) < timedelta(days=3)
    streaks = [i["details"] for i in truth if i["kind"] == "job_failure_streak"]
    assert all(d["streak_length"] >= 6 and d["job_name"] for d in streaks)
    effects = [i["details"] for i in truth if i["kind"] == "cause_effect"]
    assert all(d["effect_count"] > 0 and 45 <= d["lag_minutes"] <= 75 for d in effects)


def test_incidents_can_be_confined_to_one_week() -> None:
    """Eight kinds at 8/7 a day over one week: one incident of each kind, all inside the week."""
    start = to_us(datetime(2026, 8, 24, tzinfo=timezone.utc))
    week_end = start + 7 * DAY
    timeline = Timeline(seed=5, start=start, end=start + 14 * DAY, incident_span=(start, week_end),
                        incidents_per_day=8 / 7)
    incidents = timeline.book.incidents
    assert sorted(i.kind for i in incidents) == sorted(KINDS)
    assert all(start <= i.start and i.end <= week_end for i in incidents)
    with pytest.raises(ValueError, match="incident span"):
        Timeline(seed=5, start=start, end=week_end, incident_span=(start, week_end + DAY))


def test_no_truth_in_the_source(month: tuple[Path, SimulationSummary], truth: list[dict[str, Any]]) -> None:
    path, _ = month
    tables = {r for r in duck_rows(path, "select table_name, table_type from information_schema.tables")}
    assert tables == {(t, "BASE TABLE") for t in SOURCE_TABLES} | {("content_metadata", "VIEW")}
    leaks = duck_rows(path, "select count(*) from system_events where event_type ilike '%incident%' "
                            "or message ilike '%incident%' or event_data ilike '%incident%' "
                            "or metadata ilike '%incident%'")[0][0]
    assert leaks == 0


def test_null_tweet_id_bursts_match_their_truth(month: tuple[Path, SimulationSummary],
                                                truth: list[dict[str, Any]]) -> None:
    path, _ = month
    bursts = [i for i in truth if i["kind"] == "null_tweet_id_burst"]
    assert bursts
    for burst in bursts:
        start, end = datetime.fromisoformat(burst["start"]), datetime.fromisoformat(burst["end"])
        assert burst["details"]["hour"] == burst["start"] and end - start == timedelta(hours=1)
        posted = duck_rows(path, "select count(*) from content_generation_metadata_comprehensive "
                                 "where status = 'posted' and tweet_id is null and posted_at >= ? "
                                 "and posted_at < ?", start, end)[0][0]
        logged = duck_rows(path, "select count(*) from system_events where event_type = "
                                 "'error_null_tweet_id' and created_at >= ? and created_at < ?",
                           start, end)[0][0]
        assert posted == logged == burst["details"]["count"] > 5
    # outside the bursts no hour crosses the checklist's alert threshold (>5 in an hour)
    hours = duck_rows(path, "select date_trunc('hour', posted_at), count(*) from "
                            "content_generation_metadata_comprehensive where status = 'posted' and "
                            "tweet_id is null group by 1 having count(*) > 5")
    assert {h for h, _ in hours} == {datetime.fromisoformat(b["start"]) for b in bursts}


def test_deleted_verification_failed_rows_are_gone(month: tuple[Path, SimulationSummary],
                                                   truth: list[dict[str, Any]]) -> None:
    path, summary = month
    ids = [i for inc in truth if inc["kind"] == "deleted_verification_failed"
           for i in inc["details"]["event_ids"]]
    assert ids and summary.deleted_events == len(ids)
    left = duck_rows(path, "select count(*) from system_events where id in (select unnest(?))", ids)
    assert left[0][0] == 0
    kept = duck_rows(path, "select count(*) from system_events where event_type = 'verification_failed'")
    assert kept[0][0] > 0  # the guard only deletes some of them


def test_incident_effects_are_visible(month: tuple[Path, SimulationSummary],
                                      truth: list[dict[str, Any]]) -> None:
    path, _ = month
    for incident in truth:
        start, end = datetime.fromisoformat(incident["start"]), datetime.fromisoformat(incident["end"])

        def count(where: str, *params: Any, start: datetime = start, end: datetime = end) -> int:
            return duck_rows(path, f"select count(*) from system_events where created_at >= ? and "
                                   f"created_at < ? and {where}", start, end, *params)[0][0]

        if incident["kind"] in ("circuit_breaker_stuck", "silent_shutdown"):
            assert count("event_type in ('POST_SUCCESS', 'REPLY_SUCCESS')") == 0
            assert count("event_type = 'POSTING_QUEUE_BLOCKED' and event_data->>'reason' = ?",
                         incident["details"]["reason"]) >= 20
            assert count("event_type = 'POSTING_QUEUE_TICK'") >= 20
            breaker = count("event_type like 'circuit_breaker_%'")
            assert breaker > 0 if incident["kind"] == "circuit_breaker_stuck" else breaker == 0
        elif incident["kind"] == "error_spike":
            hours = (end - start) / timedelta(hours=1)
            per_day = duck_rows(path, "select count(*) / 30 from system_events where event_type = ?",
                                incident["subject"])[0][0]
            assert count("event_type = ?", incident["subject"]) / hours > 8 * per_day / 24
        elif incident["kind"] == "job_failure_streak":
            failed = count("event_type = ?", f"{incident['subject']}_job_execution_failed")
            assert failed == incident["details"]["streak_length"]


# ---------------------------------------------------------------------------------------------
# slices (PostgreSQL): late commits, deletions, upserts
# ---------------------------------------------------------------------------------------------


def test_slices_add_up_to_one_write(pg_location: Location, tmp_path: Path) -> None:
    days = 3
    seed = seed_with({"late_commit", "deleted_verification_failed"}, days)
    single = simulate(pg_location, days=days, seed=seed, end=END, truth_path=tmp_path / "t.json")
    whole = dump(pg_location)
    late = next(i for i in single.incidents if i["kind"] == "late_commit")["details"]
    doomed = next(i for i in single.incidents if i["kind"] == "deleted_verification_failed")["details"]
    with psycopg.connect(pg_location.dsn) as conn:
        late_created = conn.execute("select min(created_at) from system_events where id = any(%s::uuid[])",
                                    (late["event_ids"],)).fetchone()[0]
        truth_rows = conn.execute("select count(*) from sim_truth.incidents").fetchone()[0]
        public = {r[0] for r in conn.execute("select table_name from information_schema.tables "
                                             "where table_schema = 'public' and table_type = 'BASE TABLE'")}
    assert truth_rows == len(single.incidents) + len(single.habits) and public == set(SOURCE_TABLES)
    # a late row created before the first cut commits after it; a doomed row is written
    # before the second cut and deleted after it
    late_cut = late_created + timedelta(seconds=1)
    doomed_cut = min(_created_at(seed, days, doomed["event_ids"])) + timedelta(seconds=1)
    bounds = [single.start, *sorted([late_cut, doomed_cut]), END]
    older_than_late_cut, doomed_present = [], []
    for index, (lo, hi) in enumerate(pairwise(bounds)):
        simulate(pg_location, days=days, seed=seed, end=END, write_from=lo, write_to=hi,
                 reset=index == 0, truth_path=tmp_path / "t.json")
        with psycopg.connect(pg_location.dsn) as conn:
            doomed_present.append(conn.execute(
                "select count(*) from system_events where id = any(%s::uuid[])",
                (doomed["event_ids"],)).fetchone()[0])
            older_than_late_cut.append(conn.execute(
                "select count(*) from system_events where created_at < %s", (late_cut,)).fetchone()[0])
    after_cut = bounds.index(late_cut)  # the slice that starts at the late cut...
    assert older_than_late_cut[after_cut] > older_than_late_cut[after_cut - 1]  # ...brings older rows
    assert doomed_present[bounds.index(doomed_cut) - 1] > 0 and doomed_present[-1] == 0
    assert dump(pg_location) == whole


def _created_at(seed: int, days: int, ids: list[str]) -> list[datetime]:
    timeline = Timeline(seed=seed, start=to_us(END) - days * DAY, end=to_us(END))
    wanted = set(ids)
    return [from_us(e[8]) for chunk in timeline.chunks() for e in chunk.events if e[0] in wanted]


# ---------------------------------------------------------------------------------------------
# the bot's habits: what breaks a naive extraction, recorded as truth beside the incidents
# ---------------------------------------------------------------------------------------------


def _ids(rows: list[dict[str, Any]], key: str = "id") -> list[str]:
    return [row[key] for row in rows]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_habits_are_recorded_apart_from_the_incidents(month: tuple[Path, SimulationSummary],
                                                      truth_file: list[dict[str, Any]],
                                                      habits: list[dict[str, Any]]) -> None:
    """One compact record per habit, after the incidents; rates of a realistic month."""
    _, summary = month
    assert {i["kind"] for i in summary.incidents} <= set(KINDS)
    assert truth_file == summary.incidents + summary.habits == summary.incidents + habits
    assert [h["kind"] for h in habits] == list(HABIT_KINDS)
    assert all(set(h) == {"incident_id", "kind", "start", "end", "subject", "details"} for h in habits)
    assert summary.truth_path is not None and len(summary.truth_path.read_text()) < 150_000
    # about half of the update sites leave updated_at alone, as 62 of the bot's 128 do
    updates = len(UPDATE_SITES) - 1  # the insert sets it through the column default
    assert abs(len(SITES_WITHOUT_UPDATED_AT) / updates - 62 / 128) < 0.05
    counts = summary.habit_counts()
    assert 5 <= counts["deleted_decisions"] <= 30
    backdated = habit(habits, "backdated_events")
    assert 6 <= backdated["count"] <= 21 and backdated["days_late"] >= 1
    poison = [e["problem"] for e in habit(habits, "poison_payloads")["events"]]
    assert 3 <= poison.count("nul_escape") <= 8 and poison.count("not_json") == 1
    reasons = [e["reason"] for e in habit(habits, "bad_event_times")["events"]]
    assert 3 <= reasons.count("null_created_at") <= 6
    assert reasons.count("epoch_created_at") == reasons.count("infinity_created_at") == 1
    assert counts["stale_updated_at"] > 100


def test_status_changes_without_updated_at(month: tuple[Path, SimulationSummary],
                                           habits: list[dict[str, Any]]) -> None:
    """The source row carries the latest status, while updated_at stays before that change."""
    path, _ = month
    stale = habit(habits, "stale_updated_at")
    assert set(stale["by_call_site"]) <= set(SITES_WITHOUT_UPDATED_AT)
    assert sum(stale["by_call_site"].values()) == stale["count"] == len(stale["changed_at"])
    rows = duck_rows(path, "select decision_id, status, updated_at from content_generation_metadata_comprehensive "
                           "where decision_id in (select unnest(?))", list(stale["changed_at"]))
    assert len(rows) == stale["count"]
    assert all(updated_at < _at(stale["changed_at"][decision]) for decision, _, updated_at in rows)
    archived = [(d, u) for d, status, u in rows if status == "archived"]
    assert archived and all(_at(stale["changed_at"][d]) - u > timedelta(days=1) for d, u in archived)
    # the rest of the decisions were last written where updated_at is set: never newer than it
    later = duck_rows(path, "select count(*) from content_generation_metadata_comprehensive "
                            "where greatest(posted_at, created_at) > updated_at and decision_id not in "
                            "(select unnest(?))", list(stale["changed_at"]))[0][0]
    assert later == 0


def test_deleted_decisions_are_absent(month: tuple[Path, SimulationSummary],
                                      habits: list[dict[str, Any]]) -> None:
    path, _ = month
    deleted = habit(habits, "deleted_decisions")["decisions"]
    assert {d["reason"] for d in deleted} == {"test_post_cleanup", "old_decision_cleanup"}
    ids = _ids(deleted, "decision_id")
    for relation in ("content_generation_metadata_comprehensive", "content_metadata"):
        assert duck_rows(path, f"select count(*) from {relation} where decision_id in (select unnest(?))",
                         ids) == [(0,)]
    # their posting attempts stay behind: the scripts delete decisions only
    assert duck_rows(path, "select count(*) from posting_attempts where decision_id in (select unnest(?))",
                     ids)[0][0] > 0


def test_poison_payloads_land_in_a_duckdb_source(month: tuple[Path, SimulationSummary],
                                                 habits: list[dict[str, Any]]) -> None:
    path, _ = month
    poison = habit(habits, "poison_payloads")
    assert poison["payload_type"] == "varchar" and poison["stored"] == poison["count"]
    rows = {r[0]: r[1:] for r in duck_rows(path, "select id, event_type, severity, event_data, json_valid(event_data) "
                                                 "from system_events where id in (select unnest(?))",
                                           _ids(poison["events"]))}
    assert len(rows) == poison["count"]
    for event in poison["events"]:
        event_type, severity, payload, valid = rows[event["id"]]
        assert event_type == POISON_EVENT_TYPE and severity in ("info", "warning")
        if event["problem"] == "nul_escape":
            assert "\\u0000" in payload and valid  # valid JSON text that jsonb refuses
        else:
            assert not valid
    unlisted = duck_rows(path, "select count(*) from system_events where not json_valid(coalesce(event_data, "
                               "metadata)) or coalesce(event_data, metadata) like '%\\u0000%'")[0][0]
    assert unlisted == poison["count"]


def test_bad_event_times(month: tuple[Path, SimulationSummary], habits: list[dict[str, Any]]) -> None:
    path, _ = month
    bad = habit(habits, "bad_event_times")["events"]
    rows = {r[0]: r[1:] for r in duck_rows(
        path, "select id, case when created_at is null then 'null_created_at' "
              "when created_at = to_timestamp(0) then 'epoch_created_at' "
              "when isinf(created_at) then 'infinity_created_at' end, \"timestamp\", severity "
              "from system_events where id in (select unnest(?))", _ids(bad))}
    assert len(rows) == len(bad)
    for event in bad:
        reason, timestamp, severity = rows[event["id"]]
        assert reason == event["reason"] and severity == "info"
        assert timestamp == (None if event["timestamp_null"] else _at(event["happened_at"]))
    odd = duck_rows(path, "select count(*) from system_events where created_at is null or isinf(created_at) "
                          "or created_at < '2000-01-01'")[0][0]
    assert odd == len(bad)


def test_content_metadata_is_a_view_of_the_decisions(month: tuple[Path, SimulationSummary]) -> None:
    path, _ = month
    table = "content_generation_metadata_comprehensive"
    view_only = f"select * from content_metadata except all select * from {table}"
    table_only = f"select * from {table} except all select * from content_metadata"
    counts = duck_rows(path, f"select (select count(*) from content_metadata), (select count(*) from {table}), "
                             f"(select count(*) from ({view_only})), (select count(*) from ({table_only}))")
    assert counts[0][0] == counts[0][1] > 0 and counts[0][2:] == (0, 0)


def test_payload_type_decides_which_poison_lands(tmp_path: Path, pg_databases: Any) -> None:
    """DuckDB keeps every poison payload, a json column the \\u0000 ones, jsonb none (the bot's
    insert fails). Bad times (NULL, epoch, infinity) land alike everywhere."""
    days, seed = 15, 4
    duck = Location.parse(str(tmp_path / "poison.duckdb"))
    jsonb, as_json = (Location.parse(pg_databases.new(label)) for label in ("jsonb", "json"))
    light = {"days": days, "seed": seed, "end": END, "scale": 0.2}  # fewer telemetry rows; same habits
    summaries = {
        "duckdb": simulate(duck, **light),
        "jsonb": simulate(jsonb, **light, truth_path=tmp_path / "jsonb.json"),
        "json": simulate(as_json, **light, truth_path=tmp_path / "json.json", payload_type="json"),
    }
    poison = {name: habit(s.habits, "poison_payloads") for name, s in summaries.items()}
    assert {name: p["payload_type"] for name, p in poison.items()} == {
        "duckdb": "varchar", "jsonb": "jsonb", "json": "json"}
    problems = {e["id"]: e["problem"] for e in poison["duckdb"]["events"]}
    assert set(problems.values()) == {"nul_escape", "not_json"}
    stored = {name: {e["id"] for e in p["events"] if e["stored"]} for name, p in poison.items()}
    assert stored == {"duckdb": set(problems), "jsonb": set(),
                      "json": {i for i, problem in problems.items() if problem == "nul_escape"}}
    habit_events = "select id, event_type, event_data, severity, \"timestamp\", created_at from system_events " \
                   f"where event_type in ('{POISON_EVENT_TYPE}', '{BAD_TIME_EVENT_TYPE}') order by id"
    landed = {"duckdb": duck_rows(duck.path, habit_events), "jsonb": pg_rows(jsonb, habit_events),
              "json": pg_rows(as_json, habit_events)}
    normal = {name: [tuple(_normal(v) for v in row) for row in rows] for name, rows in landed.items()}
    for name in ("jsonb", "json"):
        assert {row[0] for row in normal[name] if row[1] == POISON_EVENT_TYPE} == stored[name]
        assert normal[name] == [row for row in normal["duckdb"] if row[1] == BAD_TIME_EVENT_TYPE
                                or row[0] in stored[name]]
    reasons = {row[5] for row in normal["jsonb"]}
    assert {None, "infinity", datetime(1970, 1, 1, tzinfo=timezone.utc)} <= reasons
    with pg_connect(as_json) as conn:
        text = conn.execute("select event_data::text from system_events where id = any(%s::uuid[])",
                            (list(stored["json"]),)).fetchall()
        assert text and all("\\u0000" in t for (t,) in text)
        with pytest.raises(psycopg.errors.UntranslatableCharacter):  # the poison: jsonb refuses it
            conn.execute("select event_data::jsonb from system_events where id = any(%s::uuid[])",
                         (list(stored["json"]),)).fetchall()
    totals = {name: s.rows["system_events"] for name, s in summaries.items()}
    assert totals["duckdb"] - totals["json"] == len(stored["duckdb"] - stored["json"]) > 0
    assert totals["duckdb"] - totals["jsonb"] == len(problems)
    table = "content_generation_metadata_comprehensive"
    assert pg_rows(jsonb, f"select (select count(*) from content_metadata), (select count(*) from {table}), "
                          f"(select count(*) from (select * from content_metadata except all "
                          f"select * from {table}) d)")[0] == (summaries["jsonb"].rows[table],) * 2 + (0,)


def duck_differences(first: Path, second: Path, table: str, leave_out: Collection[str] = ()) -> tuple[int, int]:
    """Rows of ``table`` only in the first file, and only in the second (multisets), leaving
    out the rows whose id is in ``leave_out``."""
    with duckdb.connect() as conn:
        conn.execute(f"attach '{first}' as a (read_only)")
        conn.execute(f"attach '{second}' as b (read_only)")
        conn.execute("create temp table leave_out as select unnest(?::varchar[]) as id", [list(leave_out)])
        kept = "where id::varchar not in (select id from leave_out)" if leave_out else ""
        a, b = f"select * from a.{table} {kept}", f"select * from b.{table} {kept}"
        return conn.execute(f"select (select count(*) from ({a} except all {b})), "
                            f"(select count(*) from ({b} except all {a}))").fetchone()


def test_habits_leave_every_other_row_alone_and_can_be_turned_off(tmp_path: Path) -> None:
    """Same seed, same rows (habits included); without habits, the same rows minus the habits'."""
    days, seed = 10, 7
    on, again, off = (tmp_path / f"{name}.duckdb" for name in ("on", "again", "off"))
    with_habits = simulate(Location.parse(str(on)), days=days, seed=seed, end=END)
    simulate(Location.parse(str(again)), days=days, seed=seed, end=END)
    without = simulate(Location.parse(str(off)), days=days, seed=seed, end=END, bot_habits=False)
    assert all(duck_differences(on, again, table) == (0, 0) for table in SOURCE_TABLES)
    assert (tmp_path / "on.incidents.json").read_text() == (tmp_path / "again.incidents.json").read_text()
    assert without.habits == [] and without.incidents == with_habits.incidents
    assert json.loads((tmp_path / "off.incidents.json").read_text()) == without.incidents

    truth = with_habits.habits
    new_events = {*_ids(habit(truth, "poison_payloads")["events"]), *_ids(habit(truth, "bad_event_times")["events"])}
    deleted = set(_ids(habit(truth, "deleted_decisions")["decisions"], "decision_id"))
    stale = habit(truth, "stale_updated_at")["changed_at"]
    assert new_events and deleted and stale
    assert duck_differences(on, off, "system_events") == (len(new_events), 0)
    assert duck_differences(on, off, "system_events", new_events) == (0, 0)
    for table in ("job_heartbeats", "posting_attempts", "metrics_scraper_runs"):
        assert duck_differences(on, off, table) == (0, 0), table
    decisions = "select * from content_generation_metadata_comprehensive"
    decisions_on = {row[1]: row for row in duck_rows(on, decisions)}
    decisions_off = {row[1]: row for row in duck_rows(off, decisions)}
    assert set(decisions_off) - set(decisions_on) == deleted
    for decision_id, row in decisions_on.items():
        honest = decisions_off[decision_id]
        if decision_id in stale:  # only updated_at differs: the change time without habits
            assert row[:-1] == honest[:-1] and row[-1] < honest[-1] == _at(stale[decision_id])
        else:
            assert row == honest
    assert duck_rows(off, "select count(*) from system_events where created_at is null or "
                          "isinf(created_at) or created_at < '2000-01-01' or event_type in (?, ?)",
                     POISON_EVENT_TYPE, BAD_TIME_EVENT_TYPE) == [(0,)]


def test_no_events_commit_hours_late_without_habits() -> None:
    start, end = to_us(END) - 8 * DAY, to_us(END)
    delays = {}
    for bot_habits in (True, False):
        timeline = Timeline(seed=3, start=start, end=end, bot_habits=bot_habits)
        delays[bot_habits] = sorted(e[COMMIT_AT] - e[8] for chunk in timeline.chunks() for e in chunk.events
                                    if e[1] != BAD_TIME_EVENT_TYPE and e[COMMIT_AT] != e[8])
    assert all(delay < HOUR for delay in delays[False])  # at most the late_commit incidents' minutes
    assert sum(d >= 2 * HOUR for d in delays[True]) == len([d for d in delays[True] if d >= HOUR]) >= 4
    assert max(delays[True]) >= 3 * DAY


def test_habits_in_slices(pg_location: Location, tmp_path: Path) -> None:
    """Slice by slice (PostgreSQL): a days-late event shows up only with the slice holding its
    commit; a status change that leaves updated_at alone is still written in its slice; a deleted
    decision goes in the slice of its deletion; and the slices add up to one write."""
    days, seed, scale = 7, 2, 0.2  # fewer telemetry rows; the same habits
    single = simulate(pg_location, days=days, seed=seed, end=END, scale=scale, truth_path=tmp_path / "t.json")
    whole = dump(pg_location)
    with pg_connect(pg_location) as conn:
        truth_kinds = {r[0] for r in conn.execute("select kind from sim_truth.incidents")}
    assert set(HABIT_KINDS) <= truth_kinds
    late = next(e for e in habit(single.habits, "backdated_events")["events"] if e["delay_seconds"] >= DAY // SECOND)
    stale = habit(single.habits, "stale_updated_at")["changed_at"]
    archived = [d for d in stale if pg_rows(pg_location, "select status from content_metadata where decision_id = %s",
                                           d)[0][0] == "archived"]
    gone = habit(single.habits, "deleted_decisions")["decisions"][0]
    assert archived, "seed 2 archives a skipped decision inside these 7 days"
    second = timedelta(seconds=1)
    cuts = {"late_created": _at(late["created_at"]) + second, "late_committed": _at(late["committed_at"]) + second,
            "archived": _at(stale[archived[0]]), "deleted": _at(gone["deleted_at"])}
    bounds = sorted({single.start, *cuts.values(), END})
    seen: dict[datetime, tuple[int, Any, Any, int]] = {}
    for index, (lo, hi) in enumerate(pairwise(bounds)):
        simulate(pg_location, days=days, seed=seed, end=END, scale=scale, write_from=lo, write_to=hi,
                 reset=index == 0, truth_path=tmp_path / "t.json")
        event = pg_rows(pg_location, "select count(*) from system_events where id = %s::uuid", late["id"])[0][0]
        decision = pg_rows(pg_location, "select status, updated_at from content_metadata where decision_id = %s",
                           archived[0])
        present = pg_rows(pg_location, "select count(*) from content_metadata where decision_id = %s",
                          gone["decision_id"])[0][0]
        seen[hi] = (event, *(decision[0] if decision else (None, None)), present)
    # the late event: created before the first cut, committed days later
    assert seen[cuts["late_created"]][0] == 0 and _at(late["created_at"]) < cuts["late_created"]
    assert seen[bounds[bounds.index(cuts["late_committed"]) - 1]][0] == 0 and seen[cuts["late_committed"]][0] == 1
    # the archive: the slice up to the change has the skip, the next one the archive, same updated_at
    after_archive = bounds[bounds.index(cuts["archived"]) + 1]
    skipped, archived_row = seen[cuts["archived"]][1:3], seen[after_archive][1:3]
    assert skipped[0] == "skipped" and archived_row[0] == "archived"
    assert archived_row[1] == skipped[1] < cuts["archived"]
    # the deletion
    assert seen[cuts["deleted"]][3] == 1 and seen[bounds[bounds.index(cuts["deleted"]) + 1]][3] == 0
    assert dump(pg_location) == whole


# ---------------------------------------------------------------------------------------------
# follow mode and the command line
# ---------------------------------------------------------------------------------------------


def test_follow_appends_at_the_requested_rate(tmp_path: Path) -> None:
    location = Location.parse(str(tmp_path / "live.duckdb"))
    result = follow(location, rate_per_second=40, seed=1, duration_seconds=2.0)
    written = duck_rows(location.path, "select count(*), count(distinct event_type), max(created_at) "
                                       "from system_events")[0]
    assert written[0] == result.events and 60 <= result.events <= 80
    assert written[1] > 3
    assert datetime.now(timezone.utc) - written[2] < timedelta(minutes=1)


def test_cli_prints_a_summary_without_the_password(pg_location: Location, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ops-warehouse")
    simulator_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    dsn = pg_location.dsn.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    args = parser.parse_args(["simulate", "--days", "0.5", "--seed", "9", "--target", dsn,
                              "--end", "2025-06-01T00:00:00Z", "--truth", str(tmp_path / "t.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "***" in out
    assert "system_events" in out and "incidents:" in out
    assert json.loads((tmp_path / "t.json").read_text()) is not None
