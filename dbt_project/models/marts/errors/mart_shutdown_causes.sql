{#-
    "Which errors cause system shutdowns" (the checklist), from the detected episodes: the
    blocking reasons and error families seen from var('shutdown_cause_window_minutes') before
    each episode's start to its end, ranked across episodes, with how much more often they occur
    in those windows than in general (rate_ratio), which separates causes from background noise.
    cause_rank orders by evidence: the lower confidence bound of the rate ratio inside the
    windows against outside them (log rate ratio − z·SE, 0.5 added to each count), so a cause
    seen a few times only around shutdowns outranks a family that fires everywhere; no ties.

    Sums small incremental tables (same numbers as counting every signal): the causes per episode
    (int_shutdown_episode_causes) and the causes per UTC day for the all-time background rate
    (int_shutdown_cause_days); only the episode windows' total comes from mart_shutdown_episodes.
-#}

{%- set before_minutes = var('shutdown_cause_window_minutes', 60) | int %}
{%- set z = var('shutdown_cause_z', 1.96) %}

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

rated as (

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
        -- inside the windows against outside them, each count + 0.5 (no zero rates)
        cast(aggregated.n_events_before + aggregated.n_events_within as double precision) + 0.5 as x_in,
        cast(greatest(overall.n_events_overall - aggregated.n_events_before - aggregated.n_events_within, 0)
             as double precision) + 0.5 as x_out,
        totals.window_hours_total as hours_in,
        observed_span.hours_overall - totals.window_hours_total as hours_out
    from aggregated
    cross join totals
    cross join observed_span
    inner join overall
        on overall.cause_type = aggregated.cause_type
       and overall.cause = aggregated.cause

),

bounded as (

    select
        rated.*,
        case when hours_in > 0 and hours_out > 0
            then ln((x_in / hours_in) / (x_out / hours_out))
        end as log_rate_ratio,
        sqrt(1.0 / x_in + 1.0 / x_out) as log_rate_ratio_se
    from rated

),

final as (

    select
        cause_type,
        cause,
        n_episodes,
        share_of_episodes,
        total_downtime_minutes,
        n_events_before,
        n_events_within,
        n_events_overall,
        events_per_hour_in_windows,
        events_per_hour_overall,
        rate_ratio,
        exp(log_rate_ratio) as rate_ratio_vs_outside,
        log_rate_ratio_se,
        exp(log_rate_ratio - {{ z }} * log_rate_ratio_se) as rate_ratio_lower,
        exp(log_rate_ratio + {{ z }} * log_rate_ratio_se) as rate_ratio_upper,
        row_number() over (
            partition by cause_type
            order by
                case when log_rate_ratio is null then 1 else 0 end,
                log_rate_ratio - {{ z }} * log_rate_ratio_se desc,
                n_episodes desc,
                total_downtime_minutes desc,
                cause
        ) as cause_rank,
        rank() over (
            partition by cause_type
            order by n_episodes desc, total_downtime_minutes desc
        ) as episode_rank
    from bounded

)

select * from final
