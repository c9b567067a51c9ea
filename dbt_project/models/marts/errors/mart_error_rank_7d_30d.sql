{#-
    The most common error families over the 7 and 30 days ending var('as_of'), overall and
    within each error category, with share, rank, an example and the trend against the
    previous window of the same length. See mart_error_rank_7d_30d.yml.
-#}

{%- set min_increase = var('trend_riser_min_increase', 5) | int %}
{%- set min_ratio = var('trend_riser_min_ratio', 1.5) | float %}

with

events as (

    select * from {{ ref('int_events_classified') }}

),

spine as (

    select * from {{ ref('int_hour_spine') }}

),

params as (

    select
        {{ as_of_timestamp() }} as as_of,
        (select min(hour_start) from spine) as data_start

),

windows as (

    select 7 as window_days
    union all
    select 30

),

windowed as (

    {#- each error of the current window (as_of - n days, as_of] or of the previous one -#}
    select
        windows.window_days,
        {{ timestamp_add('params.as_of', '-24 * windows.window_days', 'hour') }} as window_start,
        params.as_of as window_end,
        events.event_id,
        events.created_at,
        events.error_family,
        events.error_category,
        events.message,
        events.error_text,
        events.created_at > {{ timestamp_add('params.as_of', '-24 * windows.window_days', 'hour') }}
            as is_current,
        coalesce(
            params.data_start <= {{ timestamp_add('params.as_of', '-48 * windows.window_days', 'hour') }},
            false
        ) as has_prev_window
    from events
    cross join params
    inner join windows
        on events.created_at > {{ timestamp_add('params.as_of', '-48 * windows.window_days', 'hour') }}
        and events.created_at <= params.as_of
    where events.is_error
      and events.created_at > {{ timestamp_add('params.as_of', '-48 * 30', 'hour') }}

),

scoped as (

    select windowed.*, 'all' as scope_category from windowed
    union all
    select windowed.*, error_category from windowed

),

counted as (

    select
        window_days,
        min(window_start) as window_start,
        min(window_end) as window_end,
        scope_category,
        error_family,
        cast(count(case when is_current then 1 end) as bigint) as n_errors,
        case when bool_and(has_prev_window)
             then cast(count(case when not is_current then 1 end) as bigint) end as n_errors_prev_window,
        min(case when is_current then created_at end) as first_seen_at,
        max(case when is_current then created_at end) as last_seen_at
    from scoped
    group by window_days, scope_category, error_family

),

examples as (

    select window_days, scope_category, error_family, message, error_text
    from (
        select
            window_days,
            scope_category,
            error_family,
            message,
            error_text,
            row_number() over (
                partition by window_days, scope_category, error_family
                order by created_at desc, event_id desc
            ) as example_rank
        from scoped
        where is_current
    ) as ranked
    where example_rank = 1

),

final as (

    select
        counted.window_days,
        counted.window_start,
        counted.window_end,
        counted.scope_category as error_category,
        counted.error_family,
        counted.n_errors,
        {{ ops_trend_ratio('counted.n_errors', 'sum(counted.n_errors) over (partition by counted.window_days, counted.scope_category)') }}
            as share_of_errors,
        rank() over (
            partition by counted.window_days, counted.scope_category
            order by counted.n_errors desc
        ) as error_rank,
        counted.n_errors_prev_window,
        counted.n_errors - counted.n_errors_prev_window as change_vs_prev_window,
        {{ ops_trend_percent('counted.n_errors - counted.n_errors_prev_window', 'counted.n_errors_prev_window') }}
            as pct_change_vs_prev_window,
        coalesce(
            counted.n_errors - counted.n_errors_prev_window >= {{ min_increase }}
            and counted.n_errors >= {{ min_ratio }} * counted.n_errors_prev_window,
            false
        ) as is_riser,
        counted.first_seen_at,
        counted.last_seen_at,
        examples.message as example_message,
        examples.error_text as example_error_text
    from counted
    inner join examples
        on counted.window_days = examples.window_days
        and counted.scope_category = examples.scope_category
        and counted.error_family = examples.error_family
    where counted.n_errors > 0

)

select * from final
