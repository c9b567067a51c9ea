"""The alert-noise benchmark: its figures on a hand-made case, and a short run of the command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from orchestration.lib.bench.alerts_bench import Sent, alert_figures, matches

T0 = datetime(2026, 2, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def _incident(iid: str, kind: str, start_h: float, end_h: float, **details) -> dict:
    return {"incident_id": iid, "kind": kind, "subject": details.pop("subject", kind),
            "start": (T0 + start_h * H).isoformat(), "end": (T0 + end_h * H).isoformat(), "details": details}


INCIDENTS = [
    _incident("spike", "error_spike", 10, 11, event_type="error_rate_limited", subject="error_rate_limited"),
    _incident("streak", "job_failure_streak", 20, 23, job_name="plan", subject="plan"),
    _incident("shutdown", "silent_shutdown", 40, 42, reason="OFF"),
    _incident("late", "late_commit", 50, 51),  # a data-quality kind: left out
]


def _sent(rule: str, subject: str, at_h: float, since_h: float | None = None, paging: bool = True,
          group: str | None = None) -> Sent:
    return Sent(rule, subject, T0 + at_h * H, T0 + (at_h if since_h is None else since_h) * H, paging, group)


def test_matching_needs_kind_subject_and_time():
    spike, streak = INCIDENTS[0], INCIDENTS[1]
    assert matches(_sent("errors_per_hour", "all", 11), spike)  # global rule, inside
    assert matches(_sent("errors_per_hour", "all", 9), spike)  # 1 h slack before the start
    assert not matches(_sent("errors_per_hour", "all", 8.5), spike)
    assert matches(_sent("errors_per_hour", "all", 13), spike)  # 2 h grace after the end
    assert not matches(_sent("errors_per_hour", "all", 13.5), spike)
    assert not matches(_sent("null_tweet_ids", "posting", 11), spike)  # another kind
    assert matches(_sent("consecutive_job_failures", "plan", 21), streak)
    assert not matches(_sent("consecutive_job_failures", "posting", 21), streak)  # another job
    assert matches(_sent("anomaly", "errors:rate_limited", 11), spike)
    assert not matches(_sent("anomaly", "errors:other", 11), spike)
    assert matches(_sent("anomaly", "error_category:rate_limit", 11), spike)  # its category's series
    assert not matches(_sent("anomaly", "error_category:rate_limit", 21), streak)
    assert not matches(_sent("new_error_template", "t1", 11), spike)  # targets nothing


def test_figures_on_a_crafted_case():
    notes = [
        # errors_per_hour: one episode on the spike (first + repeat), one on an ordinary hour
        _sent("errors_per_hour", "all", 10),
        _sent("errors_per_hour", "all", 11, since_h=10),
        _sent("errors_per_hour", "all", 30),
        # consecutive_job_failures on the streak, 2 h 30 in
        _sent("consecutive_job_failures", "plan", 22.5),
        # system_shutdown on the shutdown at its start, and a digest-only critical_errors noise
        _sent("system_shutdown", "system", 40),
        _sent("critical_errors", "system", 5, paging=False),
        _sent("critical_errors", "system", 41, paging=False),
    ]
    rules = ["errors_per_hour", "consecutive_job_failures", "system_shutdown", "critical_errors", "null_tweet_ids"]
    f = alert_figures(notes, INCIDENTS, rules)

    eph = f["rules"]["errors_per_hour"]
    assert (eph["incidents"], eph["notified"], eph["recall"]) == (1, 1, 1.0)  # error kinds only: the spike
    assert eph["median_delay_min"] == 0.0
    assert (eph["notifications"], eph["matched"], eph["no_incident"], eph["per_incident"]) == (3, 2, 1, 2.0)
    assert (eph["episodes"], eph["episodes_no_incident"]) == (2, 1)
    assert f["rules"]["consecutive_job_failures"]["median_delay_min"] == 150.0
    crit = f["rules"]["critical_errors"]
    assert (crit["incidents"], crit["notified"], crit["no_incident"], crit["paging"]) == (1, 1, 1, False)
    nulls = f["rules"]["null_tweet_ids"]
    assert (nulls["incidents"], nulls["notified"], nulls["notifications"], nulls["recall"]) == (0, 0, 0, None)

    total = f["all"]
    assert (total["incidents"], total["notified"], total["recall"]) == (3, 3, 1.0)  # late_commit left out
    assert total["median_delay_min"] == 0.0  # delays 0, 150, 0 min
    assert total["max_delay_min"] == 150.0
    assert (total["notifications"], total["matched"], total["no_incident"]) == (7, 5, 2)
    assert total["match_share"] == round(5 / 7, 3)
    paging = f["paging"]  # without the digest-only critical_errors
    assert (paging["notifications"], paging["no_incident"], paging["match_share"]) == (5, 1, 0.8)
    assert paging["notified"] == 3 and paging["missed"] == []

    # a paging set that misses the streak: recall 2/3, and it is named
    f2 = alert_figures([n for n in notes if n.rule != "consecutive_job_failures"], INCIDENTS, rules)
    assert f2["paging"]["recall"] == round(2 / 3, 3) and f2["paging"]["missed"] == ["streak"]


def test_group_figures():
    """A group matches the incidents any of its notifications matches; ungrouped notifications
    are groups of their own."""
    notes = [
        _sent("system_shutdown", "system", 40, group="g1"),
        _sent("critical_errors", "system", 41, group="g1"),  # the same incident, the same group
        _sent("errors_per_hour", "all", 10, group="g2"),
        _sent("errors_per_hour", "all", 11, since_h=10, group="g3"),  # the spike again, in another group
        _sent("errors_per_hour", "all", 30, group="g4"),  # no incident
        _sent("null_tweet_ids", "posting", 31),  # no incident, no group
    ]
    total = alert_figures(notes, INCIDENTS, ["system_shutdown", "critical_errors", "errors_per_hour",
                                             "null_tweet_ids"])["all"]
    assert (total["notified"], total["per_incident"]) == (2, 2.0)
    assert (total["groups"], total["groups_matched"], total["groups_no_incident"]) == (5, 3, 2)
    assert (total["groups_per_incident"], total["max_groups_per_incident"]) == (1.5, 2)  # shutdown 1, spike 2
    assert total["group_match_share"] == 0.6
    # a group opened in the warm-up is left out as a group (its incident is), its later pages not
    late = alert_figures(notes, INCIDENTS, ["system_shutdown", "critical_errors"], warmup_end=T0 + 40.5 * H)["all"]
    assert (late["notifications"], late["no_incident"], late["groups"]) == (1, 1, 0)


def test_bench_alerts_command(tmp_path):
    """The command on 2 simulated days: a table and the same figures as JSON."""
    out = tmp_path / "alerts.json"
    run = subprocess.run([sys.executable, "-m", "orchestration.lib.cli", "bench", "alerts", "--days", "2",
                          "--seed", "3", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| **paging** |" in run.stdout
    figures = json.loads(out.read_text())
    assert set(figures["sets"]) == {"builtin", "shipped"}
    for figs in figures["sets"].values():
        assert {"system_shutdown", "critical_errors", "errors_per_hour", "anomaly"} <= set(figs["rules"])
        total = figs["all"]
        assert total["notifications"] == total["matched"] + total["no_incident"]
        assert total["notifications"] == sum(r["notifications"] for r in figs["rules"].values())
        paging = figs["paging"]
        assert paging["groups"] == paging["groups_matched"] + paging["groups_no_incident"]
        assert paging["groups"] <= paging["notifications"]
    assert "groups per notified incident" in run.stdout
    assert all(len(row) == 6 for row in figures["sent"]["shipped"])  # rule, subject, at, since, paging, group
    assert "job_errors_per_2h" in figures["sets"]["shipped"]["rules"]
    assert "job_errors_per_2h" not in figures["sets"]["builtin"]["rules"]


def test_warmup_leaves_out_the_first_hours():
    """Incidents that start and notifications sent before the warm-up's end do not count."""
    notes = [_sent("errors_per_hour", "all", 10), _sent("consecutive_job_failures", "plan", 22.5),
             _sent("errors_per_hour", "all", 30)]
    f = alert_figures(notes, INCIDENTS, ["errors_per_hour", "consecutive_job_failures"], warmup_end=T0 + 15 * H)
    total = f["all"]
    assert (total["incidents"], total["notified"], total["notifications"], total["no_incident"]) == (2, 1, 2, 1)
    assert f["all"]["missed"] == ["shutdown"] and f["rules"]["errors_per_hour"]["incidents"] == 0
