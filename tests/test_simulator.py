"""The operations simulator: deterministic, faithful to the source's quirks, incidents as truth.

Most checks read one 30-day DuckDB simulation (module fixture). PostgreSQL tests each get their own
database on 127.0.0.1:5432, dropped afterwards (conftest's ``pg_databases``).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from orchestration.lib.settings import Location
from orchestration.lib.simulator import cli as simulator_cli
from orchestration.lib.simulator import follow, simulate
from orchestration.lib.simulator.catalogue import EVENT_FAMILIES
from orchestration.lib.simulator.generate import Timeline
from orchestration.lib.simulator.incidents import KINDS
from orchestration.lib.simulator.model import DAY, SimulationSummary, from_us, to_us
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


def dump(location: Location) -> dict[str, list[tuple]]:
    """Every source table, ordered by key, payloads parsed (PostgreSQL re-renders jsonb)."""
    tables: dict[str, list[tuple]] = {}
    for table, key in ORDER_BY.items():
        sql = f"select * from {table} order by {key}"
        if location.is_postgres:
            with psycopg.connect(location.dsn) as conn:
                conn.execute("set timezone = 'UTC'")
                rows = conn.execute(sql).fetchall()
        else:
            rows = duck_rows(location.path, sql)
        tables[table] = [tuple(_normal(v) for v in row) for row in rows]
    return tables


def _normal(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return str(value) if value.__class__.__name__ == "UUID" else value


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
def truth(month: tuple[Path, SimulationSummary]) -> list[dict[str, Any]]:
    _, summary = month
    assert summary.truth_path is not None
    return json.loads(summary.truth_path.read_text())


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
        found = duck_rows(path, f"select count(*) from system_events where "
                                f"json_exists(coalesce(event_data, metadata), '$.{key}')")[0][0]
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
    tables = {r[0] for r in duck_rows(path, "select table_name from information_schema.tables")}
    assert tables == set(SOURCE_TABLES)
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
                                             "where table_schema = 'public'")}
    assert truth_rows == len(single.incidents) and public == set(SOURCE_TABLES)
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
