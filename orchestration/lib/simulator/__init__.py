"""The operations simulator: the bot's life, written into the source tables as the real code writes it.

``simulate(target, days=…, seed=…)`` generates a deterministic timeline [end - days, end) — the
scheduled jobs on their real intervals with their heartbeats, decisions moving through the
posting queue, posting attempts, scraper runs and ~240 kinds of system events with the
production quirks — and writes it (or the slice [write_from, write_to) of it) into PostgreSQL or
a DuckDB file in bulk. ``follow(target, rate_per_second=…, seed=…)`` keeps appending events in
real time. ``ops-warehouse simulate`` is the command line (``cli.py``).

Injected incidents are the ground truth for anomaly benchmarks. They never appear in the source
tables; they are written to a JSON file (default ``<duckdb stem>.incidents.json`` next to a DuckDB
source) and, for PostgreSQL, to ``sim_truth.incidents`` in the same database. The file is a list:

    [{"incident_id": "inc-001-silent_shutdown", "kind": "silent_shutdown",
      "start": "2025-05-02T09:26:…+00:00", "end": "…", "subject": "posting_queue",
      "details": {"reason": "MIGRATION_HEALTH"}}, …]

    kind                         subject                    details
    error_spike                  the error event type       event_type, multiplier, baseline_per_hour,
                                                            injected_count
    circuit_breaker_stuck        posting_queue              reason (CIRCUIT_BREAKER), breaker, open_minutes
    null_tweet_id_burst          error_null_tweet_id        hour, count, decision_ids
    job_failure_streak           the job                    job_name, streak_length, phase, error
    silent_shutdown              posting_queue              reason (the blocking reason)
    cause_effect                 "<cause> -> POST_FAILED"   cause, effect, effect_error_code, lag_minutes,
                                                            cause_/effect_ start and end, counts
    late_commit                  the writing job            writer, delay_seconds, event_ids
    deleted_verification_failed  verification_failed        event_ids, deleted_after_seconds

After the incidents the file holds one record per habit of the bot's writers that breaks a naive
extraction (``habits.py``; ``bot_habits=False`` turns them off). They span the whole period, are
named ``habit-<kind>``, and are kept out of ``SimulationSummary.incidents`` (``.habits``), since
no detector is scored on them:

    kind               subject                                     details
    stale_updated_at   content_generation_metadata_comprehensive   count, sites_without_updated_at,
                                                                   by_call_site, changed_at {decision
                                                                   id: latest status change}
    deleted_decisions  content_generation_metadata_comprehensive   count, decisions [decision_id,
                                                                   deleted_at, reason]
    backdated_events   system_events                               count, days_late, events [id,
                                                                   event_type, writer, created_at,
                                                                   committed_at, delay_seconds]
    poison_payloads    system_events                               count, payload_type, stored, events
                                                                   [id, created_at, problem, stored]
    bad_event_times    system_events                               count, events [id, reason,
                                                                   happened_at, timestamp_null]

Layout: ``model.py`` (time, ids, jobs, decisions, heartbeats), ``catalogue.py`` (event families,
reasons, error texts), ``incidents.py`` (planning and lookups), ``habits.py`` (the writers' habits),
``generate.py`` (the event loop), ``jobs.py`` / ``posting.py`` / ``background.py`` (what happens),
``writers.py`` (bulk writes), ``simulate.py``, ``follow.py``, ``cli.py``.
"""

from orchestration.lib.simulator.follow import FollowSummary, follow
from orchestration.lib.simulator.model import SimulationSummary
from orchestration.lib.simulator.simulate import simulate

__all__ = ["FollowSummary", "SimulationSummary", "follow", "simulate"]
