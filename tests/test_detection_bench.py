"""``ops-warehouse bench detection`` on a short simulation: structure, not the headline figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from orchestration.lib.anomaly.scoring import Anomaly
from orchestration.lib.bench.detection_bench import (
    EXCLUDED_KINDS,
    evaluate,
    incident_series,
    incident_windows,
    run_detection_bench,
)


def test_detection_bench_on_two_weeks(tmp_path):
    figures = run_detection_bench(14, 5, tmp_path)
    detectors = figures["detectors"]
    assert set(detectors) == {"ours", "static", "zscore"}
    ours = detectors["ours"]
    assert ours["incidents"] > 0
    assert set(ours["per_kind"]).isdisjoint(EXCLUDED_KINDS)
    for result in detectors.values():
        assert 0.0 <= result["precision"] <= 1.0 and 0.0 <= result["recall"] <= 1.0
        assert result["true_alarms"] <= result["alarms"]
        assert result["found"] <= result["incidents"] == ours["incidents"]
    for kind in ("error_spike", "null_tweet_id_burst"):
        if kind in ours["per_kind"]:
            assert ours["per_kind"][kind]["recall"] == 1.0, ours["missed"]
    assert "error_spike" in ours["per_kind"] or "null_tweet_id_burst" in ours["per_kind"]


T0 = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
CAUSE_EFFECT = {
    "incident_id": "inc-001-cause_effect", "kind": "cause_effect",
    "start": (T0 + timedelta(minutes=20)).isoformat(),
    "end": (T0 + timedelta(minutes=20 + 60 + 60)).isoformat(),
    "subject": "error_browser_queue_timeout -> POST_FAILED",
    "details": {"cause": "error_browser_queue_timeout", "effect": "POST_FAILED"},
}


def anomaly(series: str, at: datetime) -> Anomaly:
    return Anomaly(series, at, 6.0, 0.3, 0.0, 4.0, 5.0, ["spike"])


def test_reply_side_of_a_cause_effect_incident_is_credited():
    # the effect window fails replies too (simulator posting._draw_result): reply_failure
    assert "errors:reply_failure" in incident_series(CAUSE_EFFECT)
    windows = incident_windows([CAUSE_EFFECT])
    inside = evaluate([anomaly("errors:reply_failure", T0 + timedelta(hours=2))], windows)
    assert (inside["alarms"], inside["true_alarms"], inside["found"]) == (1, 1, 1)
    # the same hour a day later is a false alarm
    later = evaluate([anomaly("errors:reply_failure", T0 + timedelta(hours=26))], windows)
    assert (later["alarms"], later["true_alarms"], later["found"]) == (1, 0, 0)


def test_series_an_incident_does_not_move_are_not_credited():
    # breaker blips are normal operations: a cause_effect does not open the breaker
    windows = incident_windows([CAUSE_EFFECT])
    result = evaluate([anomaly("queue_blocked:CIRCUIT_BREAKER", T0 + timedelta(hours=1))], windows)
    assert result["true_alarms"] == 0 and result["false_alarms"]
    assert "queue_blocked:CIRCUIT_BREAKER" not in incident_series(CAUSE_EFFECT)
