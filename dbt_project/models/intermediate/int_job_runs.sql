{{
    config(
        materialized='table',
        pre_hook="{{ ops_postgres_plan_hints(nested_loops=false) }}",
    )
}}

{#-
    Job runs rebuilt from history (see int_job_runs.yml for the rules and their limits).
    1. events: every timer_fired of a job is a run started then; the job's failures
       (`<job>_job_execution_failed`), overlap skips (`job_run_skipped_overlap`) and
       `timer_scheduled` (logged when a run ends) belong to its latest firing at or before them
       (the idea of int_recovery_incidents). A metrics_scraper firing takes its outcome and
       duration from the metrics_scraper_runs row attributed to it the same way.
    2. heartbeat snapshots, read pairwise per job: a new last_success_at is one success; a rise
       of consecutive_failures by k (or k after a reset by a success) is k failures, the last
       one ending at the new last_failure_at, the k - 1 before it hidden (no time); a new
       last_failure_at without a rise is one failure. A snapshot run already covered by an
       event run (same job, its time inside the firing) is dropped; hidden failures only count
       beyond the event failures of the job between the two reads.
-#}

with

params as (

    select {{ as_of_timestamp() }} as as_of

),

events as (

    select event_type, created_at, job_name, family_job, error_family
    from {{ ref('int_events_classified') }}
    where created_at <= {{ as_of_timestamp() }}
      and not coalesce(is_deleted, false)
      -- the job events of the timeline below, by index on PostgreSQL (not the whole history)
      and (event_type in ('timer_fired', 'job_run_skipped_overlap', 'timer_scheduled')
           or error_family = 'job_execution_failed')

),

scraper_runs as (

    select
        run_at,
        duration_ms,
        case
            when status = 'completed' then 'success'
            when status like 'skipped%' then 'skipped'
            when status in ('error_fetch', 'crashed') or status like 'error%' then 'failure'
            else 'unknown'
        end as outcome
    from {{ ref('stg_ops__metrics_scraper_runs') }}
    where run_at <= {{ as_of_timestamp() }}

),

timeline as (

    select job_name, created_at as at_, 0 as kind_order,
           cast(null as bigint) as duration_ms, cast(null as {{ dbt.type_string() }}) as scraper_outcome
    from events
    where event_type = 'timer_fired' and job_name is not null

    union all

    select family_job, created_at, 1, cast(null as bigint), cast(null as {{ dbt.type_string() }})
    from events
    where error_family = 'job_execution_failed' and family_job is not null

    union all

    select job_name, created_at, 2, cast(null as bigint), cast(null as {{ dbt.type_string() }})
    from events
    where event_type = 'job_run_skipped_overlap' and job_name is not null

    union all

    select job_name, created_at, 3, cast(null as bigint), cast(null as {{ dbt.type_string() }})
    from events
    where event_type = 'timer_scheduled' and job_name is not null

    union all

    select 'metrics_scraper', run_at, 4, cast(duration_ms as bigint), outcome
    from scraper_runs

),

attributed as (

    select
        timeline.*,
        max(case when kind_order = 0 then at_ end) over (
            partition by job_name
            order by at_, kind_order
            rows between unbounded preceding and current row
        ) as fired_at
    from timeline

),

fires as (

    select
        job_name,
        fired_at,
        lead(fired_at) over (partition by job_name order by fired_at) as next_fired_at
    from (select distinct job_name, at_ as fired_at from attributed where kind_order = 0) as distinct_fires

),

{# the failures of a firing: the first is its outcome, any further one is a run of its own
    (its firing was not logged) #}
failures as (

    select
        job_name,
        fired_at,
        at_ as failed_at,
        row_number() over (partition by job_name, fired_at order by at_) as failure_no
    from attributed
    where kind_order = 1

),

scraper_attributed as (

    select
        fired_at,
        at_ as run_at,
        duration_ms,
        scraper_outcome,
        row_number() over (partition by fired_at order by at_, duration_ms) as scraper_no
    from attributed
    where kind_order = 4

),

fire_signals as (

    select
        job_name,
        fired_at,
        min(case when kind_order = 2 then at_ end) as skipped_at,
        min(case when kind_order = 3 then at_ end) as scheduled_at
    from attributed
    where kind_order in (2, 3)
      and fired_at is not null
    group by job_name, fired_at

),

fire_runs as (

    select
        fires.job_name,
        fires.fired_at,
        fires.next_fired_at,
        failures.failed_at,
        fire_signals.skipped_at,
        fire_signals.scheduled_at,
        scraper_attributed.run_at as scraper_run_at,
        scraper_attributed.duration_ms as scraper_duration_ms,
        scraper_attributed.scraper_outcome
    from fires
    left join failures
        on failures.job_name = fires.job_name
       and failures.fired_at = fires.fired_at
       and failures.failure_no = 1
    left join fire_signals
        on fire_signals.job_name = fires.job_name
       and fire_signals.fired_at = fires.fired_at
    left join scraper_attributed
        on fires.job_name = 'metrics_scraper'
       and scraper_attributed.fired_at = fires.fired_at
       and scraper_attributed.scraper_no = 1

),

event_runs as (

    select
        job_name,
        fired_at as run_started_at,
        case
            when scraper_outcome is not null
            then scraper_run_at + interval '1 millisecond' * scraper_duration_ms
            when failed_at is not null then failed_at
            when skipped_at is not null then cast(null as timestamp with time zone)
            else scheduled_at
        end as run_ended_at,
        coalesce(failed_at, skipped_at, scheduled_at, scraper_run_at, fired_at) as observed_at,
        case
            when scraper_outcome is not null then scraper_outcome
            when failed_at is not null then 'failure'
            when skipped_at is not null then 'skipped'
            when scheduled_at is not null or next_fired_at is not null then 'success'
            else 'unknown'
        end as outcome,
        case
            when scraper_outcome is not null then scraper_duration_ms / 60000.0
            when failed_at is not null then {{ ops_an_minutes_between('fired_at', 'failed_at') }}
            when skipped_at is not null then cast(null as double precision)
            when scheduled_at is not null then {{ ops_an_minutes_between('fired_at', 'scheduled_at') }}
        end as duration_minutes,
        case
            when scraper_outcome is not null then 'metrics_scraper_run'
            when failed_at is not null then 'execution_failed_event'
            else 'timer_fired'
        end as inferred_from,
        fired_at as run_at,
        1 as sequence_in_source,
        coalesce(next_fired_at, {{ as_of_timestamp() }}) as covers_until
    from fire_runs

    union all

    {# failures with no firing of their own #}
    select
        job_name,
        cast(null as timestamp with time zone),
        failed_at,
        failed_at,
        'failure',
        cast(null as double precision),
        'execution_failed_event',
        failed_at,
        failure_no,
        failed_at
    from failures
    where fired_at is null or failure_no > 1

    union all

    {# scraper runs with no firing #}
    select
        'metrics_scraper',
        run_at,
        run_at + interval '1 millisecond' * duration_ms,
        run_at,
        scraper_outcome,
        duration_ms / 60000.0,
        'metrics_scraper_run',
        run_at,
        scraper_no,
        run_at
    from scraper_attributed
    where fired_at is null or scraper_no > 1

),

snapshots as (

    select
        job_name,
        observed_at,
        updated_at,
        last_success_at,
        last_failure_at,
        consecutive_failures,
        lag(observed_at) over w as prev_observed_at,
        lag(updated_at) over w as prev_updated_at,
        lag(last_success_at) over w as prev_last_success_at,
        lag(last_failure_at) over w as prev_last_failure_at,
        lag(consecutive_failures) over w as prev_consecutive_failures,
        row_number() over w as read_no
    from {{ ref('stg_ops__job_heartbeat_snapshots') }}
    where observed_at <= {{ as_of_timestamp() }}
    window w as (partition by job_name order by observed_at, updated_at, _row_hash)

),

snapshot_changes as (

    select
        snapshots.*,
        (last_success_at is not null
            and (read_no = 1 or prev_last_success_at is null or last_success_at <> prev_last_success_at)
        ) as success_changed,
        (last_failure_at is not null
            and (read_no = 1 or prev_last_failure_at is null or last_failure_at <> prev_last_failure_at)
        ) as failure_changed
    from snapshots

),

snapshot_failure_counts as (

    select
        snapshot_changes.*,
        case
            when read_no = 1 or success_changed then consecutive_failures
            else consecutive_failures - prev_consecutive_failures
        end as failures_implied,
        {# failures between the two reads end after the earlier read's state was written #}
        case
            when read_no = 1 then last_success_at
            else prev_updated_at
        end as failures_after
    from snapshot_changes

),

snapshot_failures as (

    select
        job_name,
        observed_at,
        last_failure_at,
        failures_after,
        failure_changed,
        case
            when failures_implied > 0 then failures_implied
            when failure_changed then 1
            else 0
        end as n_failures
    from snapshot_failure_counts

),

{# event failures of the job inside each read's window: they account for hidden failures #}
hidden_accounted as (

    select
        snapshot_failures.job_name,
        snapshot_failures.observed_at,
        count(event_runs.job_name) as n_event_failures
    from snapshot_failures
    left join event_runs
        on event_runs.job_name = snapshot_failures.job_name
       and event_runs.outcome = 'failure'
       and event_runs.run_ended_at < coalesce(snapshot_failures.last_failure_at, snapshot_failures.observed_at)
       and (snapshot_failures.failures_after is null or event_runs.run_ended_at > snapshot_failures.failures_after)
    where snapshot_failures.n_failures > 1
    group by snapshot_failures.job_name, snapshot_failures.observed_at

),

integers as (

    {{ ops_an_integers(3) }}

),

snapshot_runs as (

    select
        job_name,
        cast(null as timestamp with time zone) as run_started_at,
        last_success_at as run_ended_at,
        observed_at,
        'success' as outcome,
        cast(null as double precision) as duration_minutes,
        'heartbeat_success_change' as inferred_from,
        last_success_at as run_at,
        1 as sequence_in_source
    from snapshot_changes
    where success_changed

    union all

    {# the visible failure: the last of the read's failures #}
    select
        job_name,
        cast(null as timestamp with time zone),
        last_failure_at,
        observed_at,
        'failure',
        cast(null as double precision),
        'heartbeat_last_failure_change',
        last_failure_at,
        n_failures
    from snapshot_failures
    where n_failures > 0 and failure_changed

    union all

    {# the failures before it (or all, if last_failure_at did not move): no time of their own #}
    select
        snapshot_failures.job_name,
        cast(null as timestamp with time zone),
        cast(null as timestamp with time zone),
        snapshot_failures.observed_at,
        'failure',
        cast(null as double precision),
        'heartbeat_consecutive_failures_jump',
        coalesce(snapshot_failures.last_failure_at, snapshot_failures.observed_at),
        integers.n
    from snapshot_failures
    inner join integers
        on integers.n >= 1
       and integers.n <= snapshot_failures.n_failures
             - (case when snapshot_failures.failure_changed then 1 else 0 end)
    left join hidden_accounted
        on hidden_accounted.job_name = snapshot_failures.job_name
       and hidden_accounted.observed_at = snapshot_failures.observed_at
    where integers.n > coalesce(hidden_accounted.n_event_failures, 0)

),

snapshot_runs_new as (

    select snapshot_runs.*
    from snapshot_runs
    where snapshot_runs.run_ended_at is null
       or not exists (
            select 1
            from event_runs
            where event_runs.job_name = snapshot_runs.job_name
              and (
                    event_runs.run_ended_at = snapshot_runs.run_ended_at
                    or (event_runs.run_started_at <= snapshot_runs.run_ended_at
                        and snapshot_runs.run_ended_at < event_runs.covers_until)
              )
       )

),

all_runs as (

    select
        job_name, run_started_at, run_ended_at, observed_at, outcome, duration_minutes,
        inferred_from, run_at, sequence_in_source
    from event_runs

    union all

    select * from snapshot_runs_new

),

final as (

    select
        {{ surrogate_key(['job_name', 'inferred_from', 'run_at', 'observed_at', 'sequence_in_source']) }} as job_run_id,
        job_name,
        run_at,
        run_started_at,
        run_ended_at,
        observed_at,
        outcome,
        duration_minutes,
        inferred_from,
        sequence_in_source
    from all_runs

)

select * from final
