{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook="{{ ops_postgres_plan_hints(nested_loops=false) }}",
        post_hook="{% if is_incremental() %}{{ ops_job_runs_delete_replaced(this) }}{% endif %}",
        indexes=(
            [{'columns': ['job_name', 'run_at']}, {'columns': ['run_at']}, {'columns': ['run_ended_at']},
             {'columns': ['_built_at']}]
            if target.type == 'postgres' else []
        ),
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

    Incremental (append + replace; macros/job_runs_incremental.sql): a run reads the job events
    from L = the earliest restart point P_j (each job's latest firing at or before the horizon
    H: the oldest event or scraper run loaded since the table's watermarks, at most the newest
    built observed_at, minus var('job_runs_rebuild_hours', 2) h), keeps each job's event runs
    from its P_j on and the snapshot runs observed from H on; the post-hook deletes the old rows
    they replace. The dedup of snapshot runs reads the kept event runs before P_j from the table
    itself (fired_at, next_fired_at). Every row equals a full build's; _rebuilt_from (= L) tells
    the models downstream where the rewrite began. Limits — run with --full-refresh when the
    table predates its watermark columns.
-#}

{#- the earliest restart point as a literal (one query when the model compiles) #}
{%- set read_from = ops_timestamp_bound(ops_job_runs_restart_from(this, 'true')) if is_incremental() else none %}

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
    {%- if is_incremental() %}
      and created_at >= {{ read_from }}
    {%- endif %}

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
    {%- if is_incremental() %}
      and run_at >= {{ read_from }}
    {%- endif %}

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
        {#- runs with no firing are numbered within their timestamp, so a window of the history
            numbers them as the whole history does #}
        row_number() over (
            partition by job_name, fired_at, case when fired_at is null then at_ end order by at_
        ) as failure_no
    from attributed
    where kind_order = 1

),

scraper_attributed as (

    select
        fired_at,
        at_ as run_at,
        duration_ms,
        scraper_outcome,
        row_number() over (
            partition by fired_at, case when fired_at is null then at_ end order by at_, duration_ms
        ) as scraper_no
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
        fired_at,
        next_fired_at
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
        cast(null as timestamp with time zone),
        cast(null as timestamp with time zone)
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
        cast(null as timestamp with time zone),
        cast(null as timestamp with time zone)
    from scraper_attributed
    where fired_at is null or scraper_no > 1

),

{#- the event runs this run writes: each job's from its restart point on #}
event_runs_new as (

    select event_runs.*
    from event_runs
    {%- if is_incremental() %}
    left join ({{ ops_job_runs_restart_points(this, 'true') }}) as restart_points
        on restart_points.job_name = event_runs.job_name
    where event_runs.run_at >= coalesce(restart_points.restart_at, {{ ops_job_runs_restart_from(this, 'true') }})
    {%- endif %}

),

{#- every event run, for the snapshot dedup below: incremental runs add the kept rows before
    each job's restart point from the table. covers_until: a firing's events belong to it until
    the next firing (as_of for the latest); a run without a firing covers only its own time #}
event_runs_all as (

    select
        job_name,
        run_started_at,
        run_ended_at,
        outcome,
        case
            when fired_at is not null then coalesce(next_fired_at, {{ as_of_timestamp() }})
            else run_at
        end as covers_until
    from (
        select job_name, run_started_at, run_ended_at, outcome, fired_at, next_fired_at, run_at
        from event_runs_new
        {%- if is_incremental() %}

        union all

        select
            kept.job_name, kept.run_started_at, kept.run_ended_at, kept.outcome, kept.fired_at,
            kept.next_fired_at, kept.run_at
        from {{ this }} as kept
        inner join ({{ ops_job_runs_restart_points(this, 'true') }}) as restart_points
            on restart_points.job_name = kept.job_name
        where kept.inferred_from not like 'heartbeat%'
          and kept.run_at < restart_points.restart_at
        {%- endif %}
    ) as runs_of_events

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
    left join event_runs_all as event_runs
        on event_runs.job_name = snapshot_failures.job_name
       and event_runs.outcome = 'failure'
       and event_runs.run_ended_at < coalesce(snapshot_failures.last_failure_at, snapshot_failures.observed_at)
       and (snapshot_failures.failures_after is null or event_runs.run_ended_at > snapshot_failures.failures_after)
    where snapshot_failures.n_failures > 1
    {%- if is_incremental() %}
      and snapshot_failures.observed_at >= {{ ops_job_runs_horizon(this, 'true') }}
    {%- endif %}
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
    where (snapshot_runs.run_ended_at is null
       or not exists (
            select 1
            from event_runs_all as event_runs
            where event_runs.job_name = snapshot_runs.job_name
              and (
                    event_runs.run_ended_at = snapshot_runs.run_ended_at
                    or (event_runs.run_started_at <= snapshot_runs.run_ended_at
                        and snapshot_runs.run_ended_at < event_runs.covers_until)
              )
       ))
    {%- if is_incremental() %}
      {#- snapshot runs observed before the horizon are final #}
      and snapshot_runs.observed_at >= {{ ops_job_runs_horizon(this, 'true') }}
    {%- endif %}

),

all_runs as (

    select
        job_name, run_started_at, run_ended_at, observed_at, outcome, duration_minutes,
        inferred_from, run_at, sequence_in_source, fired_at, next_fired_at
    from event_runs_new

    union all

    select
        *,
        cast(null as timestamp with time zone) as fired_at,
        cast(null as timestamp with time zone) as next_fired_at
    from snapshot_runs_new

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
        sequence_in_source,
        fired_at,
        next_fired_at,
        cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as _build_id,
        cast(current_timestamp as timestamp with time zone) as _built_at,
        {#- where this run's rewrite began (no row before it changed): the rebuild point of
            mart_job_performance and int_job_overlap_days #}
        {{ read_from if is_incremental() else timestamptz_literal('1970-01-01T00:00:00+00:00') }} as _rebuilt_from,
        loaded.source_loaded_through,
        loaded.scraper_loaded_through
    from all_runs
    cross join (
        select
            (select max(_loaded_at) from {{ ref('fct_system_events') }}) as source_loaded_through,
            {#- raw, deleted rows included: a deletion mark gets a new _loaded_at #}
            (select max(_loaded_at) from {{ source('ops', 'metrics_scraper_runs') }}) as scraper_loaded_through
    ) as loaded

)

select * from final
