{{ config(materialized='table') }}

{#-
    Dense hourly error counts per error family, with first differences, for the correlation
    marts: the last var('corr_window_days', 30) days of the trend spine before var('as_of')
    (or the whole spine when it is shorter), the counts read from mart_error_trends_hourly
    (dimension 'family', the classification of int_events_classified). A family enters when it
    is active in at least var('corr_min_active_hours', 5) hours of the window. The cost is the
    window's, whatever the history.
-#}

{%- set window_days = var('corr_window_days', 30) | int %}
{%- set min_active_hours = var('corr_min_active_hours', 5) | int %}

with

spine as (

    select * from {{ ref('int_hour_spine') }}

),

trends as (

    select * from {{ ref('mart_error_trends_hourly') }}

),

params as (

    select {{ timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') }} as window_start

),

window_hours as (

    select
        spine.hour_start,
        row_number() over (order by spine.hour_start) - 1 as hour_index
    from spine
    where spine.hour_start >= (select window_start from params)

),

hourly_counts as (

    select
        trends.dimension_value as error_family,
        trends.hour_start,
        trends.n_errors as n_events
    from trends
    where trends.dimension = 'family'
      and trends.n_errors > 0
      and trends.hour_start >= (select window_start from params)
      and trends.hour_start <= (select max(hour_start) from window_hours)

),

supported_families as (

    select error_family
    from hourly_counts
    group by error_family
    having count(*) >= {{ min_active_hours }}

),

dense as (

    select
        supported_families.error_family,
        window_hours.hour_index,
        window_hours.hour_start,
        coalesce(hourly_counts.n_events, 0) as n_events
    from supported_families
    cross join window_hours
    left join hourly_counts
        on hourly_counts.error_family = supported_families.error_family
       and hourly_counts.hour_start = window_hours.hour_start

),

final as (

    select
        error_family,
        cast(hour_index as bigint) as hour_index,
        hour_start,
        n_events,
        n_events - lag(n_events) over (
            partition by error_family order by hour_index
        ) as diff_events
    from dense

)

select * from final
