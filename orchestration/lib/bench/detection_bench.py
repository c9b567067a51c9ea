"""Does the anomaly scorer find the injected incidents, and only them?

The simulator writes ``days`` of the bot's life into a temporary DuckDB source with incidents
recorded as ground truth. Hourly series are built from the source (anomaly/series.py) and
scored by three detectors: ours (anomaly/scoring.py ``score_series``), the checklist's static
threshold (> 10 events in an hour, error-like series only) and an Elementary-style z-score (the
14-day window includes the scored hour, |z| > 3).

Evaluated kinds are the behaviour anomalies, each mapped to the series it shows in:

    error_spike            errors:<x> (subject error_<x>)
    null_tweet_id_burst    null_tweet_id
    job_failure_streak     job_failures:<details.job_name>, job_streaks:<details.job_name>
    silent_shutdown        posting_volume (drop), queue_blocked:<details.reason>
    circuit_breaker_stuck  posting_volume (drop), queue_blocked:CIRCUIT_BREAKER,
                           circuit_breaker_events
    cause_effect           errors:<cause without error_> (the cause's spike),
                           errors:post_failure (its effect, POST_FAILED),
                           errors:reply_failure (the same effect on the reply queue)

Every credit is a series the simulator really moves for that kind (orchestration/lib/simulator):
in a cause_effect's effect window ``posting._draw_result`` fails 85% of ALL attempts with
PLAYWRIGHT_TIMEOUT, content and replies alike, and the reply queue's failures are tracked as
``error_reply_failure``. Series an incident does not move are not credited: short
``queue_blocked:CIRCUIT_BREAKER`` hours with no incident are the background breaker blips
(``background._breaker_blip``, ~0.6/day, 4-18 min, kept clear of incident windows by design),
i.e. normal operations the scorer must learn, not a stuck breaker.

late_commit and deleted_verification_failed are data-quality incidents (rows committed late,
rows deleted), not behaviour: they are left out.

An incident is FOUND when a detector flags one of its series at an hour inside
[start - 1 h, end + 1 h]. Consecutive flagged hours of one series merge into one alarm; an alarm
is true when it overlaps the window of an incident mapped to its series. Precision = true
alarms / alarms, recall = found / evaluated incidents.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from orchestration.lib.anomaly import scoring
from orchestration.lib.anomaly.series import (
    CIRCUIT_BREAKER_EVENTS,
    POSTING_VOLUME,
    VOLUME,
    HourlySeries,
    hourly_series_from_duckdb,
)
from orchestration.lib.bench import write_figures
from orchestration.lib.settings import Location

END = datetime(2026, 3, 1, tzinfo=timezone.utc)  # pinned: same seed, same rows
EXCLUDED_KINDS = ("late_commit", "deleted_verification_failed")
SLACK = timedelta(hours=1)
DETECTORS = ("ours", "static", "zscore")


def incident_series(incident: dict[str, Any]) -> list[str]:
    """The series an incident should show in (see the module docstring)."""
    kind, details = incident["kind"], incident.get("details") or {}
    if kind == "error_spike":
        return [f"errors:{incident['subject'].removeprefix('error_')}"]
    if kind == "null_tweet_id_burst":
        return ["null_tweet_id"]
    if kind == "job_failure_streak":
        job = details.get("job_name", incident["subject"])
        return [f"job_failures:{job}", f"job_streaks:{job}"]
    if kind == "silent_shutdown":
        return [POSTING_VOLUME, f"queue_blocked:{details.get('reason')}"]
    if kind == "circuit_breaker_stuck":
        return [POSTING_VOLUME, "queue_blocked:CIRCUIT_BREAKER", CIRCUIT_BREAKER_EVENTS]
    if kind == "cause_effect":
        # the cause's spike, and its effect: POST_FAILED, logged by the tracker as post_failure.
        # The effect window fails 85% of every attempt, replies included (posting._draw_result
        # does not look at the queue kind), and a failed reply is tracked as reply_failure.
        return [f"errors:{details['cause'].removeprefix('error_')}", "errors:post_failure",
                "errors:reply_failure"]
    return []


@dataclass(frozen=True)
class Window:
    incident_id: str
    kind: str
    series: tuple[str, ...]
    start: datetime
    end: datetime


def incident_windows(incidents: list[dict[str, Any]]) -> list[Window]:
    windows = []
    for incident in incidents:
        if incident["kind"] in EXCLUDED_KINDS:
            continue
        windows.append(Window(incident["incident_id"], incident["kind"],
                              tuple(incident_series(incident)),
                              datetime.fromisoformat(incident["start"]) - SLACK,
                              datetime.fromisoformat(incident["end"]) + SLACK))
    return windows


def detect(detector: str, series: dict[str, HourlySeries],
           config: scoring.ScoringConfig | None = None) -> list[scoring.Anomaly]:
    """All anomalies of one detector over all series."""
    found: list[scoring.Anomaly] = []
    for s in series.values():
        if detector == "ours":
            found += scoring.score_series(s.name, s.hours, s.counts, s.kind, config)
        elif detector == "static":
            if s.kind != VOLUME:  # a fixed ceiling on events, not on posts
                found += scoring.static_threshold(s.name, s.hours, s.counts)
        elif detector == "zscore":
            found += scoring.zscore_including_bucket(s.name, s.hours, s.counts)
        else:
            raise ValueError(f"unknown detector {detector}")
    return found


def merge_alarms(anomalies: list[scoring.Anomaly]) -> list[tuple[str, datetime, datetime]]:
    """Consecutive flagged hours of one series -> one alarm (series, first hour, end of last)."""
    by_series: dict[str, list[datetime]] = {}
    for a in anomalies:
        by_series.setdefault(a.series, []).append(_as_datetime(a.bucket))
    alarms = []
    for name, buckets in sorted(by_series.items()):
        buckets = sorted(set(buckets))
        first = last = buckets[0]
        for bucket in buckets[1:]:
            if bucket - last > timedelta(hours=1):
                alarms.append((name, first, last + timedelta(hours=1)))
                first = bucket
            last = bucket
        alarms.append((name, first, last + timedelta(hours=1)))
    return alarms


def _as_datetime(bucket: Any) -> datetime:
    return bucket.to_pydatetime() if hasattr(bucket, "to_pydatetime") else bucket


def evaluate(anomalies: list[scoring.Anomaly], windows: list[Window]) -> dict[str, Any]:
    alarms = merge_alarms(anomalies)
    true_alarms = sum(
        any(name in w.series and first < w.end and end > w.start for w in windows)
        for name, first, end in alarms)
    found_ids = {
        w.incident_id for w in windows for a in anomalies
        if a.series in w.series and w.start <= _as_datetime(a.bucket) <= w.end}
    per_kind: dict[str, dict[str, int]] = {}
    for w in windows:
        entry = per_kind.setdefault(w.kind, {"found": 0, "incidents": 0})
        entry["incidents"] += 1
        entry["found"] += w.incident_id in found_ids
    precision = true_alarms / len(alarms) if alarms else 0.0
    recall = len(found_ids) / len(windows) if windows else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "alarms": len(alarms), "true_alarms": true_alarms, "precision": round(precision, 3),
        "found": len(found_ids), "incidents": len(windows), "recall": round(recall, 3),
        "f1": round(f1, 3),
        "per_kind": {kind: {**v, "recall": round(v["found"] / v["incidents"], 3)}
                     for kind, v in sorted(per_kind.items())},
        "false_alarms": [f"{name} {first:%Y-%m-%d %H:%M}..{end:%H:%M}"
                         for name, first, end in alarms
                         if not any(name in w.series and first < w.end and end > w.start
                                    for w in windows)],
        "missed": sorted(w.incident_id for w in windows if w.incident_id not in found_ids),
    }


def run_detection_bench(days: float, seed: int, workdir: Path, end: datetime = END,
                        config: scoring.ScoringConfig | None = None,
                        log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    from orchestration.lib.simulator import simulate

    source = workdir / "source.duckdb"
    summary = simulate(Location.parse(str(source)), days=days, seed=seed, end=end,
                       truth_path=workdir / "truth.json")
    log(f"simulated: {summary}")
    series = hourly_series_from_duckdb(source, summary.start, summary.end)
    windows = incident_windows(summary.incidents)
    figures: dict[str, Any] = {
        "days": days, "seed": seed, "start": summary.start.isoformat(),
        "end": summary.end.isoformat(), "series": len(series),
        "excluded_kinds": list(EXCLUDED_KINDS),
        "incidents_by_kind": summary.incidents_per_kind(),
        "detectors": {},
    }
    for detector in DETECTORS:
        figures["detectors"][detector] = evaluate(detect(detector, series, config), windows)
    return figures


def print_table(figures: dict[str, Any]) -> None:
    print(f"detection, {figures['days']} days, seed {figures['seed']}, {figures['series']} series; "
          f"excluded (data quality, not behaviour): {', '.join(figures['excluded_kinds'])}")
    print("| detector | alarms | true alarms | precision | found/incidents | recall | F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = {"ours": "ours", "static": "static > 10/hour", "zscore": "z-score (Elementary-style)"}
    for detector, r in figures["detectors"].items():
        print(f"| {names[detector]} | {r['alarms']} | {r['true_alarms']} | {r['precision']:.3f} | "
              f"{r['found']}/{r['incidents']} | {r['recall']:.3f} | {r['f1']:.3f} |")
    print("\nours, recall per kind:")
    print("| kind | found/incidents | recall |")
    print("|---|---:|---:|")
    for kind, v in figures["detectors"]["ours"]["per_kind"].items():
        print(f"| {kind} | {v['found']}/{v['incidents']} | {v['recall']:.3f} |")
    ours = figures["detectors"]["ours"]
    if ours["missed"]:
        print(f"ours missed: {', '.join(ours['missed'])}")
    if ours["false_alarms"]:
        print(f"ours false alarms: {'; '.join(ours['false_alarms'])}")


def main(days: float, seed: int, json_path: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="ops-bench-detect-") as tmp:
        figures = run_detection_bench(days, seed, Path(tmp), log=print)
    print_table(figures)
    write_figures(json_path, figures)
    return 0
