"""Score an hourly count series bucket by bucket: our detector and the two baselines it is
measured against (``ops-warehouse bench detection``).

Our detector (``score_series``), for each hour t in time order:

- baseline from EARLIER hours only, over a trailing window (14 days), leaving out hours already
  flagged — so an incident neither hides itself nor a later identical incident;
- seasonality: with >= 7 days of history the expected value leans on the same hour of day (and
  the same hour of the same weekday once >= 3 samples of it exist, i.e. a window of >= 3 weeks),
  blended with the overall level so a handful of samples cannot swing it;
- the test: counts with a small expected value (< 5) are Poisson: flag when
  P(X >= observed | lambda) < 1e-4 — for the hour alone and for the last few unflagged hours
  summed (a sustained rise, e.g. a job failing every run for three hours). Series of kind
  ``events`` (rows written once per queue tick while a state lasts, e.g. POSTING_QUEUE_BLOCKED)
  come in clumps: a breaker blip of a few minutes writes 1-4 rows in one hour. When their nonzero
  hours hold more events than a Poisson of the rate would, the test counts clumps: counts and
  lambda are divided by the clump size estimated from the clean history. Error-like kinds are
  not clumped: each error or failed run is itself the signal (a job streak's 3rd+ failures are
  clumped by construction, and they are the incident). Larger counts use a
  robust z: (observed - median) / (1.4826 MAD), the scale floored at sqrt(expected) and 1 so a
  flat history never divides by zero;
- guards: never flag fewer than ``min_count`` events, and require observed >= expected *
  (1 + relative_guard) and observed - expected >= ``min_excess``;
- drops (volume series): a run of hours each at most ``drop_fraction`` of expected, flagged once
  it lasts ``drop_min_hours`` (2) and the run's total is improbably low (Poisson lower tail over
  the run < 1e-4, as strict as the rise test) — the bot silently stopped posting. A stop keeps
  going and its tail keeps falling; a lull (two quiet hours at night, ~3 posts/hour expected:
  P = e^-7 ~ 1e-3) does not reach the threshold;
- the bot owners' checklist rules, each reported by name: ``errors_per_hour_gt_10``,
  ``rate_up_50pct`` (with an absolute floor, so 1 -> 2 does not fire), ``null_tweet_id_gt_5``.

Baselines: ``static_threshold`` (> 10 events in an hour) and ``zscore_including_bucket``
(Elementary-style: mean and std over a 14-day window that includes the scored hour, |z| > 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Sequence

import numpy as np
import pandas as pd

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 7 * HOURS_PER_DAY

# Series kinds (see series.py) and the checklist rules that apply to each.
ERROR_KINDS = ("errors", "job_failures")
NULL_KIND = "null_tweet_id"
VOLUME_KIND = "volume"

ERRORS_PER_HOUR_GT_10 = "errors_per_hour_gt_10"
RATE_UP_50PCT = "rate_up_50pct"
NULL_TWEET_ID_GT_5 = "null_tweet_id_gt_5"
SPIKE = "spike"
SUSTAINED_RISE = "sustained_rise"
DROP = "drop"

WARNING = "warning"
CRITICAL = "critical"


@dataclass(frozen=True)
class ScoringConfig:
    """Defaults serve every series kind; the checklist thresholds are the bot owners' own."""

    window_hours: int = 14 * HOURS_PER_DAY  # trailing baseline window
    min_history_hours: int = HOURS_PER_DAY  # score nothing before one day of history
    seasonal_min_history_hours: int = 7 * HOURS_PER_DAY  # same-hour profile from one week on
    seasonal_min_samples: int = 3  # same-hour (or same weekday-hour) samples needed to use them
    seasonal_prior_samples: float = 2.0  # blend weight n / (n + prior) of the seasonal level
    recurring_min_days: int = 3  # same hour flagged on this many days: a pattern, back in baseline
    low_count_expected: float = 5.0  # below this expected value, the Poisson test applies
    poisson_floor: float = 0.2  # lambda never below this (an all-zero history is not "never")
    poisson_p: float = 1e-4  # upper-tail probability that flags
    # clumped events: when the series' nonzero hours hold more events than a Poisson of its rate
    # would (one breaker blip blocks the queue several times), the test counts clumps, not events
    clump_min_samples: int = 5  # nonzero clean hours needed to estimate the clump size
    # the kinds whose rows are written per tick while a state lasts (see series.py); error-like
    # kinds are not clumped: there every event is a failure, and a job streak's clump (its 3rd+
    # failures in a row) is the very thing to find
    clumped_kinds: tuple[str, ...] = ("events",)
    sustained_hours: int = 3  # also test the sum of the last N unflagged hours (low counts)
    sustained_p: float = 1e-4  # upper-tail probability of that sum that flags
    mad_threshold: float = 5.0  # robust z that flags (high counts)
    mad_floor: float = 1.0  # the MAD scale is never below this nor below sqrt(expected)
    min_count: int = 3  # never flag an hour with fewer events
    relative_guard: float = 0.5  # observed must be >= expected * (1 + this)
    min_excess: float = 3.0  # and observed - expected must be >= this
    # drops (volume series)
    drop_fraction: float = 0.5  # an hour at or below this share of expected extends a drop run
    drop_min_expected: float = 1.0  # hours expecting less than this do not count as a drop
    drop_p: float = 1e-4  # Poisson lower tail of the run's total that flags it
    drop_min_hours: int = 2  # a drop is a run of at least this many hours (one empty hour is a lull)
    # the checklist (rules fire by name and raise an alarm on their own)
    errors_per_hour_limit: int = 10  # errors_per_hour_gt_10
    rate_up_ratio: float = 1.5  # rate_up_50pct: observed > expected * 1.5 ...
    rate_up_min_increase: float = 10.0  # ... and observed - expected >= this (1 -> 2 is noise)
    null_tweet_id_limit: int = 5  # null_tweet_id_gt_5
    critical_score: float = 8.0  # score at or above which a statistical alarm is critical


@dataclass
class Anomaly:
    series: str
    bucket: datetime  # hour start
    observed: float
    expected: float
    lower: float  # expected range for the hour
    upper: float
    score: float  # -log10 p (Poisson) or robust z (MAD); negative for drops
    rules: list[str] = field(default_factory=list)
    severity: str = WARNING
    detector: str = "ours"


# ---------------------------------------------------------------------------------------------
# Baseline for one hour
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    expected: float
    scale: float  # robust spread (MAD-based, floored)
    samples: int
    clump: float = 1.0  # mean events per clump (>= 1): the Poisson test divides counts by it


def _level(values: np.ndarray, low_counts: bool) -> float:
    """Median for large counts; for small ones a mean without the top 2% (a median of Poisson
    counts around 0.3 is 0, which would call every single event a surprise)."""
    if not low_counts:
        return float(np.median(values))
    if len(values) >= 50:
        values = np.sort(values)[: int(len(values) * 0.98)]
    return float(values.mean())


def expectation(history: np.ndarray, history_hours: np.ndarray, hour_of_week: int,
                config: ScoringConfig) -> Expectation:
    """Expected value for an hour from its clean history (values and their hour-of-week)."""
    expected = _level(history, float(np.median(history)) < config.low_count_expected)
    spread_from = history
    if len(history) >= config.seasonal_min_history_hours:
        same_weekday_hour = history[history_hours == hour_of_week]
        same_hour = history[history_hours % HOURS_PER_DAY == hour_of_week % HOURS_PER_DAY]
        seasonal = (same_weekday_hour if len(same_weekday_hour) >= config.seasonal_min_samples
                    else same_hour)
        if len(seasonal) >= config.seasonal_min_samples:
            weight = len(seasonal) / (len(seasonal) + config.seasonal_prior_samples)
            seasonal_level = _level(seasonal, float(np.median(seasonal)) < config.low_count_expected)
            expected = weight * seasonal_level + (1 - weight) * expected
            spread_from = seasonal  # the spread at this hour, not across the daily cycle
    center = float(np.median(spread_from))
    mad = float(np.median(np.abs(spread_from - center)))
    scale = max(1.4826 * mad, np.sqrt(max(expected, 0.0)), config.mad_floor)
    return Expectation(expected, scale, len(history))


def clump_size(history: np.ndarray, config: ScoringConfig) -> float:
    """How many events arrive together: the mean count of the nonzero hours over what a Poisson
    of the same rate gives (lambda / (1 - e^-lambda)), never below 1.

    Independent errors give ~1. Events that come in bursts of normal operations do not: a breaker
    blip of a few minutes writes 1-4 POSTING_QUEUE_BLOCKED rows in one hour, ~0.6 times a day, so
    a Poisson test of its events against a near-zero rate calls every longer blip improbable. The
    mean of the nonzero hours (not the variance) is used: one leftover incident hour barely moves
    it."""
    nonzero = history[history > 0]
    if len(nonzero) < config.clump_min_samples:
        return 1.0
    lam = float(history.mean())
    poisson_nonzero_mean = lam / -math.expm1(-lam)
    return max(1.0, float(nonzero.mean()) / poisson_nonzero_mean)


# Poisson tails with the standard library (no scipy in this project): sums of the pmf in log space.


def _pmf(k: int, lam: float) -> float:
    return math.exp(k * math.log(lam) - lam - math.lgamma(k + 1))


def upper_tail(observed: float, lam: float) -> float:
    """P(X >= observed) for X ~ Poisson(lam)."""
    k = math.ceil(observed)
    if k <= 0:
        return 1.0
    if k <= lam:  # the bulk: 1 - P(X <= k - 1) is accurate enough here
        return max(0.0, 1.0 - lower_tail(k - 1, lam))
    total, j = 0.0, k
    while True:
        term = _pmf(j, lam)
        total += term
        if term < total * 1e-12 or j > k + 1000:
            return min(total, 1.0)
        j += 1


def lower_tail(observed: float, lam: float) -> float:
    """P(X <= observed) for X ~ Poisson(lam)."""
    k = math.floor(observed)
    if k < 0:
        return 0.0
    return min(1.0, sum(_pmf(j, lam) for j in range(k + 1)))


def clumped_upper_tail(observed: float, lam: float, clump: float = 1.0) -> float:
    """P(X >= observed) when events come in clumps of ``clump``: the Poisson tail of the number
    of clumps, observed / clump against lam / clump (continuous in the count, through the
    regularized incomplete gamma function, so a clump size of 1 is exactly ``upper_tail``)."""
    if clump <= 1.0:
        return upper_tail(observed, lam)
    a, x = observed / clump, lam / clump
    if a <= 0:
        return 1.0
    # P(X >= a) = P(a, x), the regularized lower incomplete gamma function (series expansion)
    term = math.exp(a * math.log(x) - x - math.lgamma(a + 1))
    total, n = term, 1
    while term > total * 1e-12 and n < 10_000:
        term *= x / (a + n)
        total += term
        n += 1
    return min(total, 1.0)


def upper_bound(p: float, lam: float) -> float:
    """The smallest count c with P(X >= c) < p: counts from c on are surprising."""
    c = max(1, math.floor(lam))
    while upper_tail(c, lam) >= p:
        c += 1
    return float(c)


def lower_bound(p: float, lam: float) -> float:
    """The largest count c with P(X <= c) < p (-1 when even 0 is not surprising)."""
    c = -1
    while lower_tail(c + 1, lam) < p:
        c += 1
    return float(c)


def _score_from_p(p: float) -> float:
    return float(-np.log10(max(p, 1e-300)))


# ---------------------------------------------------------------------------------------------
# Our detector
# ---------------------------------------------------------------------------------------------


def _checklist_rules(kind: str, observed: float, expected: float, config: ScoringConfig) -> list[str]:
    rules = []
    if kind in ERROR_KINDS:
        if observed > config.errors_per_hour_limit:
            rules.append(ERRORS_PER_HOUR_GT_10)
        if (observed > expected * config.rate_up_ratio
                and observed - expected >= config.rate_up_min_increase):
            rules.append(RATE_UP_50PCT)
    if kind == NULL_KIND and observed > config.null_tweet_id_limit:
        rules.append(NULL_TWEET_ID_GT_5)
    return rules


def _passes_guards(observed: float, expected: float, config: ScoringConfig) -> bool:
    return (observed >= config.min_count
            and observed >= expected * (1 + config.relative_guard)
            and observed - expected >= config.min_excess)


def score_series(name: str, hours: Sequence[datetime] | pd.DatetimeIndex, counts: Sequence[float],
                 kind: str = "errors", config: ScoringConfig | None = None) -> list[Anomaly]:
    """Flagged hours of one dense hourly series, in time order (see the module docstring).

    ``kind`` is the series kind from series.py: volume series are scored for drops, every other
    kind for rises; the checklist rules apply to their kinds (errors / job_failures /
    null_tweet_id)."""
    config = config or ScoringConfig()
    hours = pd.DatetimeIndex(hours)
    values = np.asarray(counts, dtype=float)
    hour_of_week = (hours.day_of_week * HOURS_PER_DAY + hours.hour).to_numpy()
    flagged = np.zeros(len(values), dtype=bool)
    expected_at = np.full(len(values), np.nan)
    found: dict[int, Anomaly] = {}
    drop_run: list[int] = []  # hours of the current drop run (volume series)

    for t in range(len(values)):
        lo = max(0, t - config.window_hours)
        clean = ~flagged[lo:t]  # flags fed forward: past alarms stay out of the baseline
        # ... unless the same hour of day was flagged on several days: that is a daily pattern
        # the baseline must learn, not an incident (else a recurring peak stays flagged forever)
        same_hour = np.arange(t - HOURS_PER_DAY, lo - 1, -HOURS_PER_DAY)
        if flagged[same_hour].sum() >= config.recurring_min_days:
            clean[same_hour - lo] = True
        if clean.sum() < config.min_history_hours:
            continue
        exp = expectation(values[lo:t][clean], hour_of_week[lo:t][clean], int(hour_of_week[t]),
                          config)
        if kind in config.clumped_kinds:
            exp = replace(exp, clump=clump_size(values[lo:t][clean], config))
        expected_at[t] = exp.expected
        observed = values[t]

        if kind == VOLUME_KIND:
            drop_run = _extend_drop_run(drop_run, t, observed, exp.expected, config)
            if drop_run:
                _flag_drop_run(name, hours, values, expected_at, drop_run, flagged, found, config)
            continue

        anomaly = _score_rise(name, hours[t], observed, exp, kind, config)
        if anomaly is None:
            anomaly = _score_sustained(name, hours[t], t, values, expected_at, flagged, exp, config)
        if anomaly is not None:
            flagged[t] = True
            found[t] = anomaly
    return [found[t] for t in sorted(found)]


def _score_rise(name: str, bucket: datetime, observed: float, exp: Expectation, kind: str,
                config: ScoringConfig) -> Anomaly | None:
    expected = exp.expected
    if expected < config.low_count_expected:
        lam = max(expected, config.poisson_floor)
        score = _score_from_p(clumped_upper_tail(observed, lam, exp.clump))
        statistical = score >= -np.log10(config.poisson_p)
        upper = upper_bound(config.poisson_p, lam / exp.clump) * exp.clump
        lower = 0.0
        statistical_threshold = -np.log10(config.poisson_p)
    else:
        score = (observed - expected) / exp.scale
        statistical = score >= config.mad_threshold
        upper = expected + config.mad_threshold * exp.scale
        lower = max(0.0, expected - config.mad_threshold * exp.scale)
        statistical_threshold = config.mad_threshold
    statistical = statistical and _passes_guards(observed, expected, config)
    rules = _checklist_rules(kind, observed, expected, config)
    if not statistical and not rules:
        return None
    if statistical:
        rules.insert(0, SPIKE)
    # critical: far past the statistical threshold, or the checklist and the statistics agree
    critical = (statistical and (score >= max(config.critical_score, 2 * statistical_threshold)
                                 or len(rules) > 1))
    return Anomaly(name, bucket, float(observed), round(expected, 3), lower, upper,
                   round(float(score), 2), rules, CRITICAL if critical else WARNING)


def _score_sustained(name: str, bucket: datetime, t: int, values: np.ndarray,
                     expected_at: np.ndarray, flagged: np.ndarray, exp: Expectation,
                     config: ScoringConfig) -> Anomaly | None:
    """A rise too small for one hour but improbable over the last few unflagged hours."""
    if config.sustained_hours <= 1 or exp.expected >= config.low_count_expected:
        return None
    if values[t] <= exp.expected * (1 + config.relative_guard) or values[t] < 1:
        return None  # this hour itself must be elevated
    window = [i for i in range(max(0, t - config.sustained_hours + 1), t + 1)
              if not flagged[i] and not np.isnan(expected_at[i])]
    if len(window) < config.sustained_hours:
        return None
    observed_sum = float(values[window].sum())
    lam = max(float(expected_at[window].sum()), config.poisson_floor)
    if not _passes_guards(observed_sum, lam, config):
        return None
    p = clumped_upper_tail(observed_sum, lam, exp.clump)
    if p >= config.sustained_p:
        return None
    # the range is the per-hour share of the window's upper bound
    return Anomaly(name, bucket, float(values[t]), round(exp.expected, 3), 0.0,
                   upper_bound(config.sustained_p, lam / exp.clump) * exp.clump / len(window),
                   round(_score_from_p(p), 2), [SUSTAINED_RISE], WARNING)


def _extend_drop_run(run: list[int], t: int, observed: float, expected: float,
                     config: ScoringConfig) -> list[int]:
    if expected >= config.drop_min_expected and observed <= expected * config.drop_fraction:
        return [*run, t]
    return []


def _flag_drop_run(name: str, hours: pd.DatetimeIndex, values: np.ndarray,
                   expected_at: np.ndarray, run: list[int], flagged: np.ndarray,
                   found: dict[int, Anomaly], config: ScoringConfig) -> None:
    """Flag every hour of the run once it lasts ``drop_min_hours`` and its total is improbably
    low for its expected total (one empty hour is a lull: a stop persists, a lull does not)."""
    if len(run) < config.drop_min_hours:
        return
    observed_sum = float(values[run].sum())
    lam = float(expected_at[run].sum())
    p = lower_tail(observed_sum, lam)
    if p >= config.drop_p:
        return
    score = -_score_from_p(p)
    for i in run:
        if flagged[i]:
            continue
        flagged[i] = True
        expected = float(expected_at[i])
        severity = CRITICAL if len(run) >= 3 else WARNING
        found[i] = Anomaly(name, hours[i], float(values[i]), round(expected, 3),
                           max(0.0, lower_bound(config.drop_p, expected)),
                           upper_bound(config.drop_p, expected),
                           round(score, 2), [DROP], severity)


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


def static_threshold(name: str, hours: Sequence[datetime] | pd.DatetimeIndex,
                     counts: Sequence[float], limit: float = 10) -> list[Anomaly]:
    """The checklist's fixed rule alone: any hour with more than ``limit`` events."""
    hours = pd.DatetimeIndex(hours)
    values = np.asarray(counts, dtype=float)
    return [Anomaly(name, hours[t], float(values[t]), float(limit), 0.0, float(limit),
                    float(values[t] - limit), [ERRORS_PER_HOUR_GT_10], WARNING, "static")
            for t in np.flatnonzero(values > limit)]


def zscore_including_bucket(name: str, hours: Sequence[datetime] | pd.DatetimeIndex,
                            counts: Sequence[float], window_hours: int = 14 * HOURS_PER_DAY,
                            threshold: float = 3.0, min_history_hours: int = HOURS_PER_DAY
                            ) -> list[Anomaly]:
    """Elementary-style volume anomaly: mean and std over the window ending WITH the scored
    hour (so a spike inflates its own baseline), |z| > threshold; std 0 never flags."""
    hours = pd.DatetimeIndex(hours)
    values = np.asarray(counts, dtype=float)
    found = []
    for t in range(min_history_hours, len(values)):
        window = values[max(0, t - window_hours + 1): t + 1]
        mean, std = float(window.mean()), float(window.std())
        if std == 0:
            continue
        z = (values[t] - mean) / std
        if abs(z) > threshold:
            found.append(Anomaly(name, hours[t], float(values[t]), round(mean, 3),
                                 mean - threshold * std, mean + threshold * std, round(z, 2),
                                 ["zscore"], WARNING, "zscore"))
    return found


def zscore_of_bucket(values: Sequence[float], t: int, window_hours: int = 14 * HOURS_PER_DAY,
                     include_bucket: bool = True) -> float:
    """The z of hour t against its window, with or without t itself (shows the self-hiding)."""
    values = np.asarray(values, dtype=float)
    window = values[max(0, t - window_hours + int(include_bucket)): t + int(include_bucket)]
    std = float(window.std())
    return 0.0 if std == 0 else float((values[t] - window.mean()) / std)
