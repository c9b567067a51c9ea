{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook="{{ ops_delete_job_performance_to_rebuild() }}",
        indexes=([{'columns': ['job_name', 'period', 'period_start']}] if target.type == 'postgres' else []),
    )
}}

{#-
    Job performance per job per UTC day and per ISO week (Monday start), from int_job_runs,
    dim_jobs (settings) and int_job_overlap_days. Every job gets a row for every period from
    its first run to as_of (quiet periods too, so a job that stopped shows up stale).

    Incremental by week (macros/incremental.sql, ops_delete_job_performance_to_rebuild): the
    pre-hook deletes the periods from the Monday on or before the earliest of the newest day
    built, the day of as_of − var('job_runs_rebuild_hours') − 24 h and the day where the
    earliest int_job_runs rewrite since this table's last build began (_rebuilt_from); the run
    rebuilds every period after
    the newest day left, from the runs since then, carrying each job's failure streak and last
    success from that day's row. After a change to dim_jobs' settings, run with --full-refresh.
-#}

{%- set epoch = "cast('1970-01-01 00:00:00+00:00' as timestamp with time zone)" %}
{#- the first day rebuilt (a Monday; 0 rebuilds everything): macros/incremental.sql #}
{%- set rebuild_from_n = ops_job_performance_rebuild_from_n() %}

with

params as (

    select
        {{ as_of_timestamp() }} as as_of,
        {{ to_utc_date(as_of_timestamp()) }} - date '1970-01-01' as as_of_day_n,
        cast({{ rebuild_from_n }} as bigint) as rebuild_from_n

),

{#- each job's state at the end of the newest day kept (incremental runs) #}
carried as (

    {%- if is_incremental() %}
    select built.job_name, built.current_failure_streak, built.last_success_at
    from {{ this }} as built
    cross join params
    where built.period = 'day'
      and {{ to_utc_date('built.period_start') }} - date '1970-01-01' = params.rebuild_from_n - 1
    {%- else %}
    select
        cast(null as {{ dbt.type_string() }}) as job_name,
        cast(null as bigint) as current_failure_streak,
        cast(null as timestamp with time zone) as last_success_at
    where 1 = 0
    {%- endif %}

),

jobs as (

    select * from {{ ref('dim_jobs') }}

),

runs as (

    select
        job_name,
        run_at,
        outcome,
        duration_minutes,
        coalesce(run_ended_at, run_at) as finished_at,
        {{ to_utc_date('run_at') }} - date '1970-01-01' as day_n,
        row_number() over (
            partition by job_name
            order by run_at, sequence_in_source, job_run_id
        ) as run_no
    from {{ ref('int_job_runs') }}
    cross join params
    where run_at <= params.as_of
    {%- if rebuild_from_n > 0 %}
      and run_at >= {{ timestamp_add(epoch, 24 * rebuild_from_n, 'hour') }}
    {%- endif %}

),

{#- failure streaks: failures since the job's last success (skips and unknown runs neither
    extend nor break a streak, like the heartbeat's consecutive_failures) #}
streak_groups as (

    select
        runs.*,
        sum(case when outcome = 'success' then 1 else 0 end) over (
            partition by job_name order by run_no rows between unbounded preceding and current row
        ) as success_group
    from runs

),

streaks as (

    select
        streak_groups.*,
        sum(case when outcome = 'failure' then 1 else 0 end) over (
            partition by streak_groups.job_name, success_group order by run_no rows between unbounded preceding and current row
        )
        {#- a streak open at the start of the rebuilt periods goes on #}
        + case when success_group = 0 then coalesce(carried.current_failure_streak, 0) else 0 end as streak_at_run
    from streak_groups
    left join carried
        on carried.job_name = streak_groups.job_name

),

periods_of_runs as (

    select
        streaks.*,
        day_n as day_start_n,
        4 + 7 * cast(floor((day_n - 4) / 7.0) as bigint) as week_start_n
    from streaks

),

integers as (

    {{ ops_an_integers(4) }}

),

job_span as (

    select job_name, min(first_day_n) as first_day_n
    from (
        select job_name, min(day_n) as first_day_n
        from runs
        group by job_name

        union all

        select carried.job_name, params.rebuild_from_n
        from carried
        cross join params
    ) as firsts
    group by job_name

),

spine as (

    select job_span.job_name, 'day' as period, job_span.first_day_n + integers.n as start_n, 1 as length_days
    from job_span
    cross join params
    inner join integers
        on job_span.first_day_n + integers.n <= params.as_of_day_n

    union all

    select
        job_span.job_name, 'week',
        4 + 7 * cast(floor((job_span.first_day_n - 4) / 7.0) as bigint) + 7 * integers.n,
        7
    from job_span
    cross join params
    inner join integers
        on 4 + 7 * cast(floor((job_span.first_day_n - 4) / 7.0) as bigint) + 7 * integers.n <= params.as_of_day_n

),

run_periods as (

    select job_name, 'day' as period, day_start_n as start_n, run_no, outcome, duration_minutes,
           finished_at, streak_at_run
    from periods_of_runs

    union all

    select job_name, 'week', week_start_n, run_no, outcome, duration_minutes, finished_at, streak_at_run
    from periods_of_runs

),

period_stats as (

    select
        run_periods.job_name,
        run_periods.period,
        run_periods.start_n,
        count(*) as runs,
        sum(case when outcome = 'success' then 1 else 0 end) as successes,
        sum(case when outcome = 'failure' then 1 else 0 end) as failures,
        sum(case when outcome = 'skipped' then 1 else 0 end) as skips,
        sum(case when outcome = 'unknown' then 1 else 0 end) as unknown_outcomes,
        max(case when outcome = 'failure' then streak_at_run else 0 end) as longest_failure_streak,
        max(run_no) as last_run_no,
        max(case when outcome = 'success' then finished_at end) as last_success_at,
        count(duration_minutes) as runs_with_duration,
        max(duration_minutes) as duration_max_minutes,
        sum(case when duration_minutes > jobs.slow_threshold_minutes then 1 else 0 end) as slow_runs
    from run_periods
    inner join jobs
        on jobs.job_name = run_periods.job_name
    group by run_periods.job_name, run_periods.period, run_periods.start_n

),

{#- percentiles by one formula on both targets (ops_ranked_percentile) #}
durations_ranked as (

    select
        job_name,
        period,
        start_n,
        duration_minutes,
        lead(duration_minutes) over w as next_duration_minutes,
        row_number() over w as k,
        count(*) over (partition by job_name, period, start_n) as n
    from run_periods
    where duration_minutes is not null
    window w as (partition by job_name, period, start_n order by duration_minutes)

),

duration_percentiles as (

    select
        job_name,
        period,
        start_n,
        {%- for name, fraction in [('p50', '0.5'), ('p90', '0.9'), ('p95', '0.95')] %}
        {{ ops_ranked_percentile('duration_minutes', 'next_duration_minutes', 'k', 'n', fraction) }}
            as duration_{{ name }}_minutes{{ ',' if not loop.last }}
        {%- endfor %}
    from durations_ranked
    group by job_name, period, start_n

),

overlap as (

    select job_name, 'day' as period, run_date - date '1970-01-01' as start_n, run_us, overlap_us
    from {{ ref('int_job_overlap_days') }}
    cross join params
    where run_date - date '1970-01-01' >= params.rebuild_from_n

    union all

    select job_name, 'week', 4 + 7 * cast(floor(((run_date - date '1970-01-01') - 4) / 7.0) as bigint), run_us, overlap_us
    from {{ ref('int_job_overlap_days') }}
    cross join params
    where run_date - date '1970-01-01' >= params.rebuild_from_n

),

overlap_stats as (

    select job_name, period, start_n, sum(run_us) as run_us, sum(overlap_us) as overlap_us
    from overlap
    group by job_name, period, start_n

),

filled as (

    select
        spine.job_name,
        spine.period,
        spine.start_n,
        spine.length_days,
        coalesce(period_stats.runs, 0) as runs,
        coalesce(period_stats.successes, 0) as successes,
        coalesce(period_stats.failures, 0) as failures,
        coalesce(period_stats.skips, 0) as skips,
        coalesce(period_stats.unknown_outcomes, 0) as unknown_outcomes,
        coalesce(period_stats.longest_failure_streak, 0) as longest_failure_streak,
        {#- the last run and success at or before the period end, carried over quiet periods #}
        max(period_stats.last_run_no) over (
            partition by spine.job_name, spine.period order by spine.start_n
            rows between unbounded preceding and current row
        ) as last_run_no_to_date,
        max(period_stats.last_success_at) over (
            partition by spine.job_name, spine.period order by spine.start_n
            rows between unbounded preceding and current row
        ) as last_success_in_window,
        coalesce(period_stats.runs_with_duration, 0) as runs_with_duration,
        duration_percentiles.duration_p50_minutes,
        duration_percentiles.duration_p90_minutes,
        duration_percentiles.duration_p95_minutes,
        period_stats.duration_max_minutes,
        coalesce(period_stats.slow_runs, 0) as slow_runs,
        overlap_stats.run_us,
        overlap_stats.overlap_us
    from spine
    left join period_stats
        on period_stats.job_name = spine.job_name
       and period_stats.period = spine.period
       and period_stats.start_n = spine.start_n
    left join duration_percentiles
        on duration_percentiles.job_name = spine.job_name
       and duration_percentiles.period = spine.period
       and duration_percentiles.start_n = spine.start_n
    left join overlap_stats
        on overlap_stats.job_name = spine.job_name
       and overlap_stats.period = spine.period
       and overlap_stats.start_n = spine.start_n

),

{#- the last success to date: in the rebuilt periods, else carried from the day before them #}
carried_forward as (

    select
        filled.*,
        case
            when carried.last_success_at is null then filled.last_success_in_window
            when filled.last_success_in_window is null then carried.last_success_at
            when filled.last_success_in_window > carried.last_success_at then filled.last_success_in_window
            else carried.last_success_at
        end as last_success_to_date,
        carried.current_failure_streak as carried_failure_streak
    from filled
    left join carried
        on carried.job_name = filled.job_name

),

bounded as (

    select
        carried_forward.*,
        {{ timestamp_add(epoch, '24 * carried_forward.start_n', 'hour') }} as period_start,
        case
            when {{ timestamp_add(epoch, '24 * (carried_forward.start_n + carried_forward.length_days)', 'hour') }} < params.as_of
            then {{ timestamp_add(epoch, '24 * (carried_forward.start_n + carried_forward.length_days)', 'hour') }}
            else params.as_of
        end as period_end
    from carried_forward
    cross join params

),

final as (

    select
        bounded.job_name,
        bounded.period,
        cast(bounded.period_start as timestamp with time zone) as period_start,
        bounded.period_end,
        {#- the day / week holding as_of is not over: period_end is as_of, counts still grow #}
        {{ timestamp_add(epoch, '24 * (bounded.start_n + bounded.length_days)', 'hour') }} > params.as_of as is_partial,
        cast(bounded.runs as bigint) as runs,
        cast(bounded.successes as bigint) as successes,
        cast(bounded.failures as bigint) as failures,
        cast(bounded.skips as bigint) as skips,
        cast(bounded.unknown_outcomes as bigint) as unknown_outcomes,
        case
            when bounded.runs > 0
            then cast(bounded.failures as double precision) / cast(bounded.runs as double precision)
        end as failure_rate,
        cast(bounded.longest_failure_streak as bigint) as longest_failure_streak,
        cast(coalesce(last_run.streak_at_run, bounded.carried_failure_streak, 0) as bigint) as current_failure_streak,
        cast(bounded.runs_with_duration as bigint) as runs_with_duration,
        bounded.duration_p50_minutes,
        bounded.duration_p90_minutes,
        bounded.duration_p95_minutes,
        bounded.duration_max_minutes,
        cast(bounded.slow_runs as bigint) as slow_runs,
        jobs.slow_threshold_minutes,
        bounded.last_success_to_date as last_success_at,
        case
            when bounded.last_success_to_date is not null
            then greatest(0.0, {{ ops_an_minutes_between('bounded.last_success_to_date', 'bounded.period_end') }})
        end as minutes_since_last_success,
        jobs.expected_interval_minutes,
        jobs.stale_after_minutes,
        coalesce(
            {{ ops_an_minutes_between('bounded.last_success_to_date', 'bounded.period_end') }} > jobs.stale_after_minutes,
            true
        ) as is_stale,
        case
            when bounded.run_us > 0
            then cast(bounded.overlap_us as double precision) / cast(bounded.run_us as double precision)
        end as overlap_share,
        case
            when bounded.run_us > 0
            then cast(bounded.overlap_us as double precision) / cast(bounded.run_us as double precision)
                 > {{ var('job_overlap_target_share', 0.1) }}
        end as is_overlap_above_target,
        case
            when coalesce(bounded.run_us, 0) = 0
            then 'no run with a known start and end in the period'
        end as overlap_null_reason,
        cast(bounded.run_us as double precision) / 60000000.0 as known_run_minutes,
        cast(current_timestamp as timestamp with time zone) as _built_at
    from bounded
    inner join jobs
        on jobs.job_name = bounded.job_name
    left join streaks as last_run
        on last_run.job_name = bounded.job_name
       and last_run.run_no = bounded.last_run_no_to_date
    cross join params
    {#- an as_of at midnight does not open an empty period #}
    where bounded.period_start < params.as_of

)

select * from final
