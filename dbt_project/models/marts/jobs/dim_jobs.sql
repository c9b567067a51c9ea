{#-
    Every scheduled job seen anywhere — job events (timer_fired / timer_scheduled payload
    job_name, `<job>_job_execution_failed` and `<job>_consecutive_failures`, watchdog events
    naming a job), the current heartbeats, their snapshots, metrics_scraper_runs — with its
    settings from seeds/job_settings.csv, or the vars' defaults when the seed lacks the job.
-#}

{%- set default_interval = var('job_default_expected_interval_minutes', 60) | int %}
{%- set default_slow = var('job_slow_threshold_minutes', 5) %}
{%- set stale_intervals = var('job_stale_after_intervals', 3) %}

with

events as (

    select job_name, created_at
    from {{ ref('int_events_classified') }}
    where job_name is not null
      and not coalesce(is_deleted, false)
      and created_at <= {{ as_of_timestamp() }}

),

sightings as (

    select job_name, min(created_at) as first_seen_at, max(created_at) as last_seen_at,
           'events' as seen_in
    from events
    group by job_name

    union all

    select job_name, min(updated_at), max(updated_at), 'heartbeats'
    from {{ ref('stg_ops__job_heartbeats') }}
    group by job_name

    union all

    select job_name, min(updated_at), max(updated_at), 'heartbeat_snapshots'
    from {{ ref('stg_ops__job_heartbeat_snapshots') }}
    group by job_name

    union all

    select 'metrics_scraper', min(run_at), max(run_at), 'metrics_scraper_runs'
    from {{ ref('stg_ops__metrics_scraper_runs') }}
    where run_at <= {{ as_of_timestamp() }}
    having count(*) > 0

),

jobs as (

    select
        job_name,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        max(case when seen_in = 'events' then 1 else 0 end) = 1 as seen_in_events,
        max(case when seen_in = 'heartbeats' then 1 else 0 end) = 1 as seen_in_heartbeats,
        max(case when seen_in = 'heartbeat_snapshots' then 1 else 0 end) = 1 as seen_in_snapshots,
        max(case when seen_in = 'metrics_scraper_runs' then 1 else 0 end) = 1 as seen_in_scraper_runs
    from sightings
    where job_name is not null
    group by job_name

),

final as (

    select
        jobs.job_name,
        settings.job_name is not null as has_settings,
        coalesce(settings.expected_interval_minutes, {{ default_interval }}) as expected_interval_minutes,
        cast(coalesce(settings.slow_threshold_minutes, {{ default_slow }}) as double precision) as slow_threshold_minutes,
        cast(coalesce(
            settings.stale_after_minutes,
            {{ stale_intervals }} * coalesce(settings.expected_interval_minutes, {{ default_interval }})
        ) as double precision) as stale_after_minutes,
        jobs.first_seen_at,
        jobs.last_seen_at,
        jobs.seen_in_events,
        jobs.seen_in_heartbeats,
        jobs.seen_in_snapshots,
        jobs.seen_in_scraper_runs
    from jobs
    left join {{ ref('job_settings') }} as settings
        on settings.job_name = jobs.job_name

)

select * from final
