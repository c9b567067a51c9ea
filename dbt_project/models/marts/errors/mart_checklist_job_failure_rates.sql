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
        ) as run_failure_rank
    from jobs
    left join checklist on checklist.job_name = jobs.job_name
    left join current_state on current_state.job_name = jobs.job_name
    left join runs on runs.job_name = jobs.job_name

)

select * from final
