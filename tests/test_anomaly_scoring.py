"""The anomaly scorer on small synthetic hourly series (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestration.lib.anomaly.scoring import (
    DROP,
    ERRORS_PER_HOUR_GT_10,
    NULL_TWEET_ID_GT_5,
    RATE_UP_50PCT,
    Anomaly,
    ScoringConfig,
    clump_size,
    clumped_upper_tail,
    score_series,
    static_threshold,
    upper_tail,
    zscore_including_bucket,
    zscore_of_bucket,
)

START = pd.Timestamp("2025-01-06 00:00", tz="UTC")  # a Monday


def hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range(START, periods=n, freq="h")


def flagged_at(anomalies: list[Anomaly]) -> list[int]:
    return [int((a.bucket - START) / pd.Timedelta(hours=1)) for a in anomalies]


def poisson_noise(n: int, lam: float, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, n)


def test_spike_inside_its_own_window_is_flagged_and_hides_from_the_zscore():
    counts = poisson_noise(15 * 24, 4.0)
    t = 14 * 24 + 5
    counts[t] = 30
    ours = score_series("errors:x", hours(len(counts)), counts)
    assert t in flagged_at(ours)
    spike = next(a for a in ours if flagged_at([a]) == [t])
    assert spike.observed == 30 and spike.expected < 6 and spike.upper < 30
    # the z-score whose window includes the bucket: the spike inflates its own mean and std
    with_bucket = zscore_of_bucket(counts, t, include_bucket=True)
    without_bucket = zscore_of_bucket(counts, t, include_bucket=False)
    assert with_bucket < without_bucket
    # and a shorter spike-heavy window hides it from the z-score entirely
    counts_b = counts.copy()
    counts_b[t - 3:t] = 30
    assert t not in flagged_at(zscore_including_bucket("x", hours(len(counts_b)), counts_b,
                                                       window_hours=24))


def test_flat_history_gives_no_division_by_zero_and_no_flags():
    for value in (0, 4, 50):
        counts = np.full(10 * 24, value)
        # kind "events": the statistics alone (the checklist's > 10 rule would fire on 50)
        assert score_series("flat", hours(len(counts)), counts, kind="events") == []
        assert zscore_including_bucket("flat", hours(len(counts)), counts) == []
    # a single jump after a perfectly flat history is scored without error and flagged
    counts = np.full(10 * 24, 50)
    counts[-1] = 90
    flagged = score_series("flat", hours(len(counts)), counts, kind="events")
    assert flagged_at(flagged) == [len(counts) - 1] and np.isfinite(flagged[0].score)


def test_low_volume_noise_does_not_alarm_but_a_low_volume_burst_does():
    counts = poisson_noise(30 * 24, 0.3, seed=11)
    counts = np.minimum(counts, 2)  # 0-2 per hour
    assert score_series("errors:rare", hours(len(counts)), counts) == []
    counts[25 * 24 + 3] = 9  # 9 in an hour against lambda ~0.3
    assert flagged_at(score_series("errors:rare", hours(len(counts)), counts)) == [25 * 24 + 3]
    assert upper_tail(9, 0.3) < 1e-4 < upper_tail(2, 0.3)


def test_daily_peak_that_recurs_is_not_flagged():
    hour_of_day = np.arange(21 * 24) % 24
    counts = np.where((hour_of_day >= 12) & (hour_of_day < 15), 40, 2)
    counts = counts + poisson_noise(len(counts), 1.0, seed=3)
    anomalies = score_series("daily", hours(len(counts)), counts, kind="events")
    # the first peak days may surprise a day-old baseline; from one week on the profile knows
    assert [t for t in flagged_at(anomalies) if t >= 7 * 24] == []
    # a peak at an hour that never had one is still flagged
    counts[18 * 24 + 3] = 40
    assert 18 * 24 + 3 in flagged_at(score_series("daily", hours(len(counts)), counts,
                                                  kind="events"))


def test_past_incident_does_not_hide_a_later_identical_one():
    counts = poisson_noise(20 * 24, 2.0, seed=5)
    first, second = 5 * 24 + 10, 9 * 24 + 10
    counts[first:first + 6] = 25  # a six-hour incident inside the later one's window
    counts[second:second + 6] = 25
    flagged = set(flagged_at(score_series("errors:x", hours(len(counts)), counts)))
    assert set(range(first, first + 6)) <= flagged
    assert set(range(second, second + 6)) <= flagged
    # without excluding flagged hours from the baseline (window = the incident), the second
    # would look normal to a mean over a window full of the first
    assert zscore_of_bucket(counts, second + 5, window_hours=24 * 5) < 3


def test_checklist_rules_fire_by_name():
    counts = np.full(3 * 24, 12)  # a steady 12 errors an hour: over 10 every hour
    anomalies = score_series("errors:busy", hours(len(counts)), counts, kind="errors")
    assert anomalies and all(ERRORS_PER_HOUR_GT_10 in a.rules for a in anomalies)
    assert all(RATE_UP_50PCT not in a.rules for a in anomalies)  # not up vs its own baseline

    counts = np.full(3 * 24, 20)
    counts[-1] = 60  # +200% and +40 absolute: the statistics agree with the rules
    last = score_series("errors:x", hours(len(counts)), counts, kind="errors")[-1]
    assert RATE_UP_50PCT in last.rules and last.severity == "critical"
    counts[-1] = 40  # +100%, +20: the rules fire alone, a warning
    last = score_series("errors:x", hours(len(counts)), counts, kind="errors")[-1]
    assert RATE_UP_50PCT in last.rules and last.severity == "warning"

    counts = np.ones(3 * 24, dtype=int)
    counts[-1] = 2  # 1 -> 2 is +100% but no real rise: the absolute floor holds it
    assert score_series("errors:x", hours(len(counts)), counts, kind="errors") == []

    counts = np.zeros(3 * 24, dtype=int)
    counts[-1] = 6
    rules = score_series("null_tweet_id", hours(len(counts)), counts, kind="null_tweet_id")[-1].rules
    assert NULL_TWEET_ID_GT_5 in rules and ERRORS_PER_HOUR_GT_10 not in rules
    assert score_series("null_tweet_id", hours(len(counts)), np.minimum(counts, 2),
                        kind="null_tweet_id") == []


def test_posting_drop_is_flagged_and_normal_volume_is_not():
    counts = poisson_noise(10 * 24, 4.0, seed=9)
    assert score_series("posting_volume", hours(len(counts)), counts, kind="volume") == []
    stop = 8 * 24 + 6
    counts[stop:stop + 4] = 0  # posting silently stops for four hours
    anomalies = score_series("posting_volume", hours(len(counts)), counts, kind="volume")
    assert set(flagged_at(anomalies)) == set(range(stop, stop + 4))
    assert all(DROP in a.rules and a.observed < a.expected for a in anomalies)
    # a series of another kind never flags a drop
    assert score_series("x", hours(len(counts)), counts, kind="events") == []


def test_static_threshold_and_config_defaults():
    counts = np.array([0, 11, 10, 12])
    assert flagged_at(static_threshold("x", hours(4), counts)) == [1, 3]
    config = ScoringConfig()
    assert config.window_hours == 14 * 24 and config.min_count == 3


def daily_volume(days: int, night: float, day: float, seed: int) -> np.ndarray:
    """Posting volume with a daily cycle: ``night`` posts/hour from 00:00 to 08:00, else ``day``."""
    hour_of_day = np.arange(days * 24) % 24
    lam = np.where(hour_of_day < 8, night, day)
    return np.random.default_rng(seed).poisson(lam)


def flagged_from_day(anomalies: list[Anomaly], day: int) -> list[int]:
    """Flagged hours from ``day`` on (before one week the baseline knows no daily profile)."""
    return [t for t in flagged_at(anomalies) if t >= day * 24]


def test_night_lull_from_low_volume_is_not_a_drop_but_a_daytime_stop_is():
    counts = daily_volume(14, 3.0, 6.0, seed=4)
    assert flagged_from_day(score_series("posting_volume", hours(len(counts)), counts,
                                         kind="volume"), 8) == []
    night = 12 * 24 + 2
    lull = counts.copy()
    lull[night:night + 2] = 0  # two empty hours at ~3 posts/hour: P = e^-6, a lull
    assert flagged_from_day(score_series("posting_volume", hours(len(lull)), lull,
                                         kind="volume"), 8) == []
    day = 12 * 24 + 13
    stop = counts.copy()
    stop[day:day + 2] = 0  # two empty hours at ~6 posts/hour: P = e^-12, the bot stopped
    anomalies = score_series("posting_volume", hours(len(stop)), stop, kind="volume")
    assert flagged_from_day(anomalies, 8) == list(range(day, day + 2))
    assert all(DROP in a.rules for a in anomalies)


def test_a_single_empty_hour_is_not_a_drop_even_at_high_volume():
    counts = poisson_noise(10 * 24, 12.0, seed=2)
    t = 8 * 24 + 14
    counts[t] = 0  # P(0 | 12) = 6e-6, yet one hour is a lull: a stop lasts
    assert score_series("posting_volume", hours(len(counts)), counts, kind="volume") == []
    counts[t + 1] = 0
    flagged = flagged_at(score_series("posting_volume", hours(len(counts)), counts, kind="volume"))
    assert flagged == [t, t + 1]
    assert ScoringConfig().drop_min_hours == 2 and ScoringConfig().drop_p == 1e-4


def blips(days: int, seed: int) -> np.ndarray:
    """Breaker blips of normal operations: every ~40 hours one hour with 1-4 events, else 0."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(days * 24, dtype=int)
    for t in range(7, len(counts), 40):
        counts[t] = rng.integers(1, 5)
    return counts


def test_clumped_events_a_routine_blip_is_not_flagged_but_a_stuck_breaker_is():
    counts = blips(21, seed=1)
    t = 20 * 24 + 5
    counts[t] = 4  # a long blip: 4 blocks in an hour against a rate of ~0.06/hour
    name = "queue_blocked:CIRCUIT_BREAKER"
    # the first blips may surprise a history with too few of them; from two weeks on, none does
    assert flagged_from_day(score_series(name, hours(len(counts)), counts, kind="events"), 14) == []
    # counted as independent events (no clump estimate), the same blip is "improbable"
    no_clumps = ScoringConfig(clump_min_samples=10**9)
    assert t in flagged_at(score_series(name, hours(len(counts)), counts, kind="events",
                                        config=no_clumps))
    # error-like kinds are not clumped: each event is a failure of its own
    assert t in flagged_at(score_series("errors:x", hours(len(counts)), counts, kind="errors"))
    # a stuck breaker blocks the queue every tick for hours: still flagged
    counts[t:t + 3] = 10
    assert flagged_from_day(score_series(name, hours(len(counts)), counts, kind="events"),
                            14) == list(range(t, t + 3))


def test_clump_size_is_one_for_independent_events_and_the_tail_matches_poisson():
    config = ScoringConfig()
    assert clump_size(poisson_noise(14 * 24, 0.3, seed=3), config) < 1.1
    assert clump_size(poisson_noise(14 * 24, 2.0, seed=3), config) < 1.1
    assert clump_size(blips(14, seed=1), config) > 1.5
    assert clump_size(np.zeros(100), config) == 1.0  # no nonzero hour: nothing to estimate
    for k, lam in ((4, 0.2), (9, 0.3), (2, 0.3), (12, 4.0)):
        assert clumped_upper_tail(k, lam, 1.0) == upper_tail(k, lam)
        assert abs(clumped_upper_tail(k, lam, 1.0 + 1e-9) / upper_tail(k, lam) - 1) < 1e-6
        assert clumped_upper_tail(k, lam, 2.0) > upper_tail(k, lam)
