"""``ops-warehouse bench detection`` on a short simulation: structure, not the headline figures."""

from __future__ import annotations

from orchestration.lib.bench.detection_bench import EXCLUDED_KINDS, run_detection_bench


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
