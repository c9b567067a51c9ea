{#-
    The improvement checklist's "Jobs with highest failure rates", as a mart:

        SELECT job_name,
               COUNT(*) FILTER (WHERE last_run_status = 'failure') as failures,
               COUNT(*) FILTER (WHERE last_run_status = 'success') as successes,
               ROUND(100.0 * COUNT(*) FILTER (WHERE last_run_status = 'failure') / COUNT(*), 2)
                   as failure_rate_pct
        FROM job_heartbeats WHERE updated_at > NOW() - INTERVAL '7 days'
        GROUP BY job_name HAVING <failures> > 0 ORDER BY failure_rate_pct DESC;

    job_heartbeats holds one current row per job, so the checklist's "rate" is 100 for every job
    whose latest run failed and the job is absent otherwise. The checklist columns reproduce that
    exactly (raw status, NOW() = var('as_of')); the run_* columns rebuild the real rate over the
    same 7 days from the job events (timer_fired = a run, <job>_job_execution_failed = a failed run).
-#}

with

heartbeats as (

    select * from {{ ref('stg_ops__job_heartbeats') }}

),

events as (

    select * from {{ ref('int_events_classified') }}

),

params as (

    select
        {{ timestamp_add(as_of_timestamp(), -168, 'hour') }} as window_start,
        {{ as_of_timestamp() }} as window_end

),

checklist as (

    select
        heartbeats.job_name,
        count(case when heartbeats.last_run_status_raw = 'failure' then 1 end) as failures,
        count(case when heartbeats.last_run_status_raw = 'success' then 1 end) as successes,
        count(*) as n_heartbeat_rows
    from heartbeats
    cross join params
    where heartbeats.updated_at > params.window_start
    group by heartbeats.job_name

),

current_state as (

    select
        job_name,
        last_run_status_raw,
        last_run_status,
        consecutive_failures,
        last_success_at,
        last_failure_at,
        updated_at
    from heartbeats

),

runs as (

    select
        coalesce(events.family_job, events.job_name) as job_name,
        count(case when events.event_type = 'timer_fired' then 1 end) as n_runs,
        count(case when events.error_family = 'job_execution_failed' then 1 end) as n_failed_runs,
        count(case when events.error_family = 'consecutive_failures' then 1 end) as n_consecutive_failure_alerts
    from events
    cross join params
    where events.created_at > params.window_start
      and events.created_at <= params.window_end
      and (events.event_type = 'timer_fired' or events.family_job is not null)
    group by coalesce(events.family_job, events.job_name)

),

jobs as (

    select job_name from current_state
    union
    select job_name from runs where job_name is not null

),

final as (

    select
        jobs.job_name,
        (select window_start from params) as window_start,
        (select window_end from params) as window_end,
        coalesce(checklist.failures, 0) as failures,
        coalesce(checklist.successes, 0) as successes,
        case when checklist.n_heartbeat_rows > 0
            then cast(round(100.0 * checklist.failures / checklist.n_heartbeat_rows, 2) as double precision)
        end as failure_rate_pct,
        coalesce(checklist.failures, 0) > 0 as is_in_checklist,
        current_state.last_run_status,
        current_state.consecutive_failures,
        current_state.last_success_at,
        current_state.last_failure_at,
        current_state.updated_at as heartbeat_updated_at,
        coalesce(runs.n_runs, 0) as n_runs,
        coalesce(runs.n_failed_runs, 0) as n_failed_runs,
        coalesce(runs.n_consecutive_failure_alerts, 0) as n_consecutive_failure_alerts,
        case when runs.n_runs > 0
            then cast(runs.n_failed_runs as double precision) / runs.n_runs
        end as run_failure_rate,
        rank() over (
            order by case when runs.n_runs > 0
                then cast(runs.n_failed_runs as double precision) / runs.n_runs end desc nulls last
        ) as run_failure_rank,
        {#- why the checklist's literal numbers are what they are, on the row itself: an analyst
            meeting "failures 1, 100 %" beside hundreds of failed runs must not need the docs -#}
        case
            when current_state.job_name is null
                then 'Not in the checklist''s result: the job has no job_heartbeats row (only the event log knows it).'
            when checklist.n_heartbeat_rows is null
                then 'Not in the checklist''s result: its one job_heartbeats row was last updated before the 7-day window.'
            when coalesce(checklist.failures, 0) > 0
                then 'failures = 1, failure_rate_pct = 100: the checklist counts job_heartbeats rows, and that table '
                     || 'keeps one current row per job, so it says only that the latest run failed. '
            when current_state.last_run_status = 'failure'
                then 'failures = 0 although the latest run failed: the heartbeat says '''
                     || current_state.last_run_status_raw || ''' (an older writer), which the checklist''s filter on ''failure'' misses. '
            when coalesce(checklist.successes, 0) > 0
                then 'failures = 0: the checklist reads the one current job_heartbeats row per job, and the latest run succeeded. '
            else 'failures = 0: the latest heartbeat status is '''
                 || coalesce(current_state.last_run_status_raw, 'NULL') || ''', neither failure nor success (counted in COUNT(*) only). '
        end
        || case
            when current_state.job_name is null or checklist.n_heartbeat_rows is null then ''
            else 'The real rate over the same 7 days, from the event log: ' || cast(coalesce(runs.n_failed_runs, 0) as varchar)
                 || ' failed of ' || cast(coalesce(runs.n_runs, 0) as varchar) || ' runs (run_failure_rate).'
        end
        || case
            when current_state.job_name is null or checklist.n_heartbeat_rows is null
                then ' The event log: ' || cast(coalesce(runs.n_failed_runs, 0) as varchar)
                     || ' failed of ' || cast(coalesce(runs.n_runs, 0) as varchar) || ' runs in the window (run_failure_rate).'
            else ''
        end as checklist_note
    from jobs
    left join checklist on checklist.job_name = jobs.job_name
    left join current_state on current_state.job_name = jobs.job_name
    left join runs on runs.job_name = jobs.job_name

)

select * from final
