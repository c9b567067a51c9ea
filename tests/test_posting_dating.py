"""Posting health dates each decision's outcome by when its status was reached, on both targets.

The bot changes a decision's status in place and mostly leaves ``updated_at`` stale, so
``int_decision_outcomes`` dates the current status by posted_at, else the event that caused it,
else the warehouse's observation of the change (``raw.decision_snapshots``), else
greatest(created_at, updated_at). One module fixture lands hand-made ``raw`` rows in a fresh
DuckDB file and a fresh PostgreSQL database, builds ``+mart_posting_health_hourly`` and
``+mart_posting_health_daily`` on both (``orchestration.lib.build.run_dbt``: models, data tests
and unit tests), and the tests check:

- a decision set to posted with updated_at left at its queued time counts in the hour of
  posted_at; one set to failed with updated_at stale counts in the hour of its failure event; one
  whose change has no event but was observed between two snapshots counts in the hour of the
  observing snapshot; one first seen already in its final status falls back to
  greatest(created_at, updated_at); ``outcome_dated_by`` says which;
- a decision deleted in the source (raw ``_deleted_at`` set) is not counted;
- a decision created two days before the first event starts the hour spine and is in the marts;
- a 1970 event in raw does not move the spine start (time_floor) nor lengthen it;
- a payload holding the escape ``\\u0000`` does not fail the PostgreSQL build and parses as NULL
  on both targets;
- both targets give identical rows.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from test_dbt_models import DuckDBWarehouse, PostgresWarehouse, Warehouse, ts

from orchestration.lib.build import dbt_build_args, run_dbt
from orchestration.lib.settings import Location

AS_OF = "2024-05-08T12:00:00+00:00"
LOADED = ts("2024-05-08T11:30:00")
FIRST_EVENT = ts("2024-05-06T10:00:00")
EARLY_DECISION_CREATED = FIRST_EVENT - dt.timedelta(days=2) + dt.timedelta(minutes=15)  # 05-04 10:15
NUL = "\\u0000"  # the six characters PostgreSQL's jsonb refuses (backslash, u, 0000)
SELECT = "+mart_posting_health_hourly +mart_posting_health_daily"


# --------------------------------------------------------------------------------------------
# Hand-made raw rows
# --------------------------------------------------------------------------------------------

def _event(id_: str, event_type: str, created_at: str, payload: dict | str | None, *,
           deleted_at: dt.datetime | None = None) -> dict[str, Any]:
    created = ts(created_at)
    return {
        "id": id_, "event_type": event_type,
        "event_data": payload if payload is None or isinstance(payload, str) else json.dumps(payload),
        "metadata": None, "severity": "info", "message": None, "component": None,
        "timestamp": created, "created_at": created,
        "_loaded_at": LOADED, "_row_hash": f"h-{id_}", "_deleted_at": deleted_at,
    }


def _decision(seq: int, decision_id: str, status: str, *, created_at: str, updated_at: str,
              posted_at: str | None = None, scheduled_at: str | None = None, tweet_id: str | None = None,
              features: str | None = None, deleted_at: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "id": seq, "decision_id": decision_id, "decision_type": "single", "status": status,
        "scheduled_at": ts(scheduled_at) if scheduled_at else None,
        "posted_at": ts(posted_at) if posted_at else None, "tweet_id": tweet_id,
        "thread_tweet_ids": None, "target_tweet_id": None, "skip_reason": None, "error_message": None,
        "features": features, "is_test_post": False,
        "created_at": ts(created_at), "updated_at": ts(updated_at),
        "_loaded_at": LOADED, "_row_hash": f"d-{decision_id}", "_deleted_at": deleted_at,
    }


def _snapshot(decision: dict[str, Any], status: str, observed_at: str, change: str) -> dict[str, Any]:
    row = {k: v for k, v in decision.items() if not k.startswith("_")}
    row.update(status=status, _observed_at=ts(observed_at), _row_hash=f"s-{decision['decision_id']}-{status}",
               _change=change)
    return row


def raw_rows() -> dict[str, list[dict[str, Any]]]:
    decisions = [
        # posted at 09:40, updated_at left at its queued time (the bot did not set it)
        _decision(1, "d_posted", "posted", created_at="2024-05-07T08:00:00", updated_at="2024-05-07T08:00:00",
                  scheduled_at="2024-05-07T09:30:00", posted_at="2024-05-07T09:40:00", tweet_id="1790000000000000001",
                  features=json.dumps({"retry_count": 1, "note": "x"}).replace("x", NUL)),
        # failed by the POST_FAILED at 10:35, updated_at stale at 08:00
        _decision(2, "d_failed", "failed", created_at="2024-05-07T08:00:00", updated_at="2024-05-07T08:00:00"),
        # skipped without any event; the warehouse saw it queued at 08:05, skipped at 11:05
        _decision(3, "d_observed", "skipped", created_at="2024-05-07T08:00:00", updated_at="2024-05-07T08:00:00"),
        # first seen (12:05) already failed, no event: greatest(created_at, updated_at) = 07:30
        _decision(4, "d_first_sight", "failed", created_at="2024-05-07T07:00:00", updated_at="2024-05-07T07:30:00"),
        # deleted in the source: not counted anywhere (a post at 09:50, created at 08:00)
        _decision(5, "d_deleted", "posted", created_at="2024-05-07T08:00:00", updated_at="2024-05-07T09:50:00",
                  posted_at="2024-05-07T09:50:00", tweet_id="1790000000000000005", deleted_at=LOADED),
        # created two days before the first event, still queued (dated by its created_at)
        _decision(6, "d_early", "queued", created_at=EARLY_DECISION_CREATED.isoformat(),
                  updated_at=EARLY_DECISION_CREATED.isoformat()),
    ]
    by_id = {d["decision_id"]: d for d in decisions}
    snapshots = [
        _snapshot(by_id["d_observed"], "queued", "2024-05-07T08:05:00", "inserted"),
        _snapshot(by_id["d_observed"], "skipped", "2024-05-07T11:05:00", "updated"),
        _snapshot(by_id["d_first_sight"], "failed", "2024-05-07T12:05:00", "inserted"),
        _snapshot(by_id["d_failed"], "queued", "2024-05-07T08:05:00", "inserted"),
        _snapshot(by_id["d_failed"], "failed", "2024-05-07T11:05:00", "updated"),
    ]
    events = [
        _event("e_first", "POSTING_QUEUE_TICK", FIRST_EVENT.isoformat(), {"ready_count": 0}),
        _event("e_success", "POST_SUCCESS", "2024-05-07T09:40:00", {"decision_id": "d_posted"}),
        _event("e_failed", "POST_FAILED", "2024-05-07T10:35:00",
               {"decision_id": "d_failed", "error_code": "PLAYWRIGHT_TIMEOUT"}),
        # a payload holding \u0000: parses as NULL, so its decision_id is not evidence (it would
        # otherwise move d_failed to 11:00)
        _event("e_nul", "POST_FAILED", "2024-05-07T11:50:00",
               '{"decision_id": "d_failed", "error": "bad ' + NUL + ' byte"}'),
        # a deleted event is no evidence either
        _event("e_deleted", "POST_FAILED", "2024-05-07T11:55:00", {"decision_id": "d_failed"}, deleted_at=LOADED),
        # a clock stuck at the epoch: must not start the spine
        _event("e_1970", "POSTING_QUEUE_TICK", "1970-01-01T00:00:00", {"ready_count": 0}),
        # stamped after as_of: neither evidence nor spine
        _event("e_future", "POST_FAILED", "2024-05-09T00:00:00", {"decision_id": "d_failed"}),
    ]
    attempts = [
        {"id": "a1", "job_type": "post", "decision_id": "d_posted", "target_tweet_id": None,
         "tweet_id": "1790000000000000001", "status": "success", "error_message": None,
         "metrics": json.dumps({"total_ms": 60000}), "created_at": ts("2024-05-07T09:39:00"),
         "_loaded_at": LOADED, "_row_hash": "a-1", "_deleted_at": None},
        {"id": "a2", "job_type": "post", "decision_id": "d_failed", "target_tweet_id": None, "tweet_id": None,
         "status": "failure", "error_message": "x", "metrics": '{"total_ms": 1, "note": "' + NUL + '"}',
         "created_at": ts("2024-05-07T10:34:00"), "_loaded_at": LOADED, "_row_hash": "a-2", "_deleted_at": None},
    ]
    # where each extracted table's data starts, as the extractor records it (the spine reads it)
    extract_state = [{"source_table": "content_generation_metadata_comprehensive", "cursor_column": "updated_at",
                      "data_from": EARLY_DECISION_CREATED}]
    return {
        "_extract_state": extract_state,
        "system_events": events,
        "content_generation_metadata_comprehensive": decisions,
        "decision_snapshots": snapshots,
        "posting_attempts": attempts,
    }


# --------------------------------------------------------------------------------------------
# Both targets, built once for the module
# --------------------------------------------------------------------------------------------

class Built:
    def __init__(self, warehouse: Warehouse, location: Location) -> None:
        self.warehouse = warehouse
        self.location = location
        self.error: BaseException | None = None


def _build(built: Built, work: Path) -> None:
    try:
        built.warehouse.create_raw(raw_rows())
        run_dbt(built.location, dbt_build_args(AS_OF, select=SELECT), target_path=work, timeout=600)
    except BaseException as exc:  # noqa: BLE001 - reported by the fixture
        built.error = exc


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, module_pg_databases) -> dict[str, Built]:
    root = tmp_path_factory.mktemp("posting_dating")
    dsn = module_pg_databases.new("wh")
    targets = {
        "duckdb": Built(DuckDBWarehouse(root / "warehouse.duckdb"), Location.parse(str(root / "warehouse.duckdb"))),
        "postgres": Built(PostgresWarehouse(dsn.rsplit("/", 1)[1]), Location.parse(dsn)),
    }
    threads = [threading.Thread(target=_build, args=(b, root / name)) for name, b in targets.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b in targets.values():
        if b.error is not None:
            raise b.error
    return targets


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def wh(request: pytest.FixtureRequest, builds: dict[str, Built]) -> Warehouse:
    return builds[request.param].warehouse


def _outcomes(wh: Warehouse) -> dict[str, dict[str, Any]]:
    rows = wh.rows("select decision_id, outcome, outcome_at, outcome_dated_by "
                   "from intermediate.int_decision_outcomes order by decision_id")
    return {r[0]: {"outcome": r[1], "outcome_at": r[2], "dated_by": r[3]} for r in rows}


def _hourly(wh: Warehouse) -> dict[dt.datetime, dict[str, int]]:
    cols = ("n_created", "n_posted", "n_failed", "n_skipped", "n_blocked", "n_in_flight", "n_other",
            "n_null_tweet_id", "n_attempts")
    rows = wh.rows(f"select hour_start, {', '.join(cols)} from marts.mart_posting_health_hourly order by hour_start")
    return {r[0]: dict(zip(cols, r[1:])) for r in rows}


def _nonzero(counts: dict[dt.datetime, dict[str, int]], column: str) -> dict[dt.datetime, int]:
    return {hour: c[column] for hour, c in counts.items() if c[column]}


# --------------------------------------------------------------------------------------------
# Dating
# --------------------------------------------------------------------------------------------

def test_each_outcome_dated_by_its_best_evidence(wh: Warehouse) -> None:
    out = _outcomes(wh)
    assert out["d_posted"] == {"outcome": "posted", "outcome_at": ts("2024-05-07T09:40:00"), "dated_by": "posted_at"}
    # the POST_FAILED at 10:35; not the stale updated_at (08:00), not the observing snapshot
    # (11:05), not the \u0000 payload (11:50), the deleted event (11:55) or the one after as_of
    assert out["d_failed"] == {"outcome": "failed", "outcome_at": ts("2024-05-07T10:35:00"), "dated_by": "event"}
    assert out["d_observed"] == {"outcome": "skipped", "outcome_at": ts("2024-05-07T11:05:00"),
                                 "dated_by": "snapshot"}
    assert out["d_first_sight"] == {"outcome": "failed", "outcome_at": ts("2024-05-07T07:30:00"),
                                    "dated_by": "created_or_updated_at"}
    assert out["d_early"] == {"outcome": "in_flight", "outcome_at": EARLY_DECISION_CREATED,
                              "dated_by": "created_or_updated_at"}
    assert "d_deleted" not in out


def test_outcomes_counted_in_the_hour_they_happened(wh: Warehouse) -> None:
    hourly = _hourly(wh)
    assert _nonzero(hourly, "n_posted") == {ts("2024-05-07T09:00:00"): 1}  # d_deleted's 09:50 post is gone
    assert _nonzero(hourly, "n_failed") == {ts("2024-05-07T07:00:00"): 1, ts("2024-05-07T10:00:00"): 1}
    assert _nonzero(hourly, "n_skipped") == {ts("2024-05-07T11:00:00"): 1}
    assert _nonzero(hourly, "n_in_flight") == {ts("2024-05-04T10:00:00"): 1}
    assert _nonzero(hourly, "n_null_tweet_id") == {}
    # created: d_early on 05-04, d_first_sight at 07:00, three at 08:00 (d_deleted not counted)
    assert _nonzero(hourly, "n_created") == {ts("2024-05-04T10:00:00"): 1, ts("2024-05-07T07:00:00"): 1,
                                             ts("2024-05-07T08:00:00"): 3}
    assert _nonzero(hourly, "n_attempts") == {ts("2024-05-07T09:00:00"): 1, ts("2024-05-07T10:00:00"): 1}


def test_deleted_decision_left_out_of_staging(wh: Warehouse) -> None:
    ids = [r[0] for r in wh.rows("select decision_id from staging.stg_ops__decisions order by decision_id")]
    assert ids == ["d_early", "d_failed", "d_first_sight", "d_observed", "d_posted"]
    # the history stays in raw
    assert wh.rows("select count(*) from raw.content_generation_metadata_comprehensive "
                   "where _deleted_at is not null") == [(1,)]


# --------------------------------------------------------------------------------------------
# The spine
# --------------------------------------------------------------------------------------------

def test_spine_starts_at_the_earliest_decision_and_ignores_the_1970_event(wh: Warehouse) -> None:
    spine = wh.rows("select min(hour_start), max(hour_start), count(*), max(hour_index) from intermediate.int_hour_spine")
    first, last, n_hours, max_index = spine[0]
    # d_early (05-04 10:15) is two days before the first event (05-06 10:00): it starts the spine;
    # the 1970 event does not (time_floor), nor the event after as_of
    assert first == ts("2024-05-04T10:00:00")
    assert last == ts(AS_OF) - dt.timedelta(hours=1)
    expected_hours = int((ts(AS_OF) - ts("2024-05-04T10:00:00")) / dt.timedelta(hours=1))
    assert n_hours == expected_hours == 98 and max_index == n_hours - 1
    # the marts span the same hours, d_early included
    hourly = _hourly(wh)
    assert min(hourly) == first and len(hourly) == n_hours
    days = wh.rows("select day_start, n_created, n_in_flight from marts.mart_posting_health_daily "
                   "order by day_start")
    assert days[0] == (ts("2024-05-04T00:00:00"), 1, 1)
    assert len(days) == 5  # 05-04 .. 05-08


def test_1970_event_is_in_raw_and_staging_but_in_no_series(wh: Warehouse) -> None:
    assert wh.rows("select count(*) from staging.stg_ops__system_events where event_id = 'e_1970'") == [(1,)]
    (floor_ok,) = wh.rows("select min(hour_start) >= cast('2020-01-01T00:00:00+00:00' as timestamp with time zone) "
                          "from intermediate.int_hour_spine")
    assert floor_ok == (True,)


# --------------------------------------------------------------------------------------------
# \u0000 payloads
# --------------------------------------------------------------------------------------------

def test_nul_escape_payloads_parse_as_null(wh: Warehouse) -> None:
    (event,) = wh.rows("select payload, payload_column, decision_id, error_text "
                       "from staging.stg_ops__system_events where event_id = 'e_nul'")
    assert event == (None, "event_data", None, None)
    (decision,) = wh.rows("select features, retry_count from staging.stg_ops__decisions where decision_id = 'd_posted'")
    assert decision == (None, None)
    (attempt,) = wh.rows("select metrics from staging.stg_ops__posting_attempts where attempt_id = 'a2'")
    assert attempt == (None,)
    # a clean payload still parses
    (ok,) = wh.rows("select decision_id, error_code from staging.stg_ops__system_events where event_id = 'e_failed'")
    assert ok == ("d_failed", "PLAYWRIGHT_TIMEOUT")


# --------------------------------------------------------------------------------------------
# Both targets agree
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("relation, order_by", [
    ("intermediate.int_decision_outcomes", "decision_id"),
    ("intermediate.int_hour_spine", "hour_start"),
    ("intermediate.int_posting_health_buckets", "grain, bucket_start"),
    ("marts.mart_posting_health_hourly", "hour_start"),
    ("marts.mart_posting_health_daily", "day_start"),
    ("staging.stg_ops__decision_snapshots", "decision_snapshot_id"),
    ("staging.stg_ops__system_events", "event_id"),
])
def test_targets_agree(builds: dict[str, Built], relation: str, order_by: str) -> None:
    duck = builds["duckdb"].warehouse.dicts(relation, order_by)
    pg = builds["postgres"].warehouse.dicts(relation, order_by)
    assert duck, relation
    assert list(duck[0]) == list(pg[0]), "same columns in the same order"
    assert duck == pg
