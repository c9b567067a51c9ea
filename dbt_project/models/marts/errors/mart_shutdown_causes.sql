{#-
    "Which errors cause system shutdowns" (the checklist), from the detected episodes: the
    blocking reasons and error families seen from var('shutdown_cause_window_minutes') before
    each episode's start to its end, ranked across episodes, with how much more often they occur
    in those windows than in general (rate_ratio), which separates causes from background noise.

    Sums small incremental tables (same numbers as counting every signal): the causes per episode
    (int_shutdown_episode_causes) and the causes per UTC day for the all-time background rate
    (int_shutdown_cause_days); only the episode windows' total comes from mart_shutdown_episodes.
-#}

{%- set before_minutes = var('shutdown_cause_window_minutes', 60) | int %}

with

episodes as (

    select * from {{ ref('mart_shutdown_episodes') }}

),

episode_causes as (

    select * from {{ ref('int_shutdown_episode_causes') }}

),

cause_days as (

    select * from {{ ref('int_shutdown_cause_days') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

windows as (

    select
        {{ timestamp_add('episodes.shutdown_start_at', -before_minutes, 'minute') }} as window_start_at,
        coalesce(episodes.shutdown_end_at, params.as_of) as window_end_at
    from episodes
    cross join params

),

totals as (

    select
        count(*) as n_episodes_total,
        cast(sum({{ ops_an_microseconds_between('window_start_at', 'window_end_at') }}) as double precision)
            / 3600000000.0 as window_hours_total
    from windows

),

overall as (

    select
        cause_type,
        cause,
        cast(sum(n_events) as bigint) as n_events_overall
    from cause_days
    where cause_type <> 'all_signals'
    group by cause_type, cause

),

observed_span as (

    select {{ ops_an_minutes_between('min(cause_days.first_signal_at)', 'max(params.as_of)') }} / 60.0 as hours_overall
    from cause_days
    cross join params
    where cause_days.cause_type = 'all_signals'

),

aggregated as (

    select
        cause_type,
        cause,
        count(*) as n_episodes,
        cast(sum(duration_us) as double precision) / 60000000.0 as total_downtime_minutes,
        cast(sum(n_events_before) as bigint) as n_events_before,
        cast(sum(n_events_within) as bigint) as n_events_within
    from episode_causes
    group by cause_type, cause

),

final as (

    select
        aggregated.cause_type,
        aggregated.cause,
        aggregated.n_episodes,
        cast(aggregated.n_episodes as double precision) / totals.n_episodes_total as share_of_episodes,
        aggregated.total_downtime_minutes,
        aggregated.n_events_before,
        aggregated.n_events_within,
        overall.n_events_overall,
        (aggregated.n_events_before + aggregated.n_events_within) / nullif(totals.window_hours_total, 0)
            as events_per_hour_in_windows,
        overall.n_events_overall / nullif(observed_span.hours_overall, 0) as events_per_hour_overall,
        (
            (aggregated.n_events_before + aggregated.n_events_within) / nullif(totals.window_hours_total, 0)
        ) / nullif(overall.n_events_overall / nullif(observed_span.hours_overall, 0), 0) as rate_ratio,
        rank() over (
            partition by aggregated.cause_type
            order by aggregated.n_episodes desc, aggregated.total_downtime_minutes desc
        ) as cause_rank
    from aggregated
    cross join totals
    cross join observed_span
    inner join overall
        on overall.cause_type = aggregated.cause_type
       and overall.cause = aggregated.cause

)

select * from final
