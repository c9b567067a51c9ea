{#-
    "Which errors cause system shutdowns" (the checklist), from the detected episodes: the
    blocking reasons and error families seen from var('shutdown_cause_window_minutes') before
    each episode's start to its end, ranked across episodes, with how much more often they occur
    in those windows than in general (rate_ratio), which separates causes from background noise.
-#}

{%- set before_minutes = var('shutdown_cause_window_minutes', 60) | int %}

with

episodes as (

    select * from {{ ref('mart_shutdown_episodes') }}

),

signals as (

    select * from {{ ref('int_shutdown_signals') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

cause_events as (

    select
        case when signals.signal_kind = 'error' then 'error_family' else 'block_reason' end as cause_type,
        case when signals.signal_kind = 'error' then signals.event_family else signals.block_reason end as cause,
        signals.signal_at
    from signals
    cross join params
    where signals.signal_at <= params.as_of
      and (signals.signal_kind = 'error' or signals.is_blocking)

),

windows as (

    select
        episodes.episode_id,
        episodes.shutdown_start_at,
        {{ timestamp_add('episodes.shutdown_start_at', -before_minutes, 'minute') }} as window_start_at,
        coalesce(episodes.shutdown_end_at, params.as_of) as window_end_at,
        {{ ops_an_microseconds_between('episodes.shutdown_start_at', 'coalesce(episodes.shutdown_end_at, params.as_of)') }}
            as duration_us
    from episodes
    cross join params

),

in_windows as (

    select
        windows.episode_id,
        windows.duration_us,
        cause_events.cause_type,
        cause_events.cause,
        cause_events.signal_at < windows.shutdown_start_at as is_before
    from windows
    inner join cause_events
        on cause_events.signal_at >= windows.window_start_at
       and cause_events.signal_at < windows.window_end_at

),

per_episode as (

    select
        episode_id,
        cause_type,
        cause,
        max(duration_us) as duration_us,
        count(case when is_before then 1 end) as n_events_before,
        count(case when not is_before then 1 end) as n_events_within
    from in_windows
    group by episode_id, cause_type, cause

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
        count(*) as n_events_overall
    from cause_events
    group by cause_type, cause

),

observed_span as (

    select {{ ops_an_minutes_between('min(signals.signal_at)', 'max(params.as_of)') }} / 60.0 as hours_overall
    from signals
    cross join params

),

aggregated as (

    select
        cause_type,
        cause,
        count(*) as n_episodes,
        cast(sum(duration_us) as double precision) / 60000000.0 as total_downtime_minutes,
        cast(sum(n_events_before) as bigint) as n_events_before,
        cast(sum(n_events_within) as bigint) as n_events_within
    from per_episode
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
