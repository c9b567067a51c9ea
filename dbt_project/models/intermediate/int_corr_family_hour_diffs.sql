{{ config(materialized='table') }}

{#-
    Dense hourly error counts per error family, with first differences, for the correlation
    marts. The spine runs over every UTC hour from the first to the last hour holding an error
    event (up to var('as_of')); a family enters when it is active in at least
    var('corr_min_active_hours', 5) hours. Hours without an event count 0, so the first
    difference (count − previous hour's count) is defined for every hour but the first.
-#}

{%- set min_active_hours = var('corr_min_active_hours', 5) | int %}

with

events as (

    select * from {{ ref('int_corr_event_families') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

error_events as (

    select
        events.event_family,
        events.created_hour
    from events
    cross join params
    where events.is_error
      and events.created_at <= params.as_of

),

bounds as (

    select
        min(created_hour) as first_hour,
        {{ ops_an_hours_between('min(created_hour)', 'max(created_hour)') }} as last_index
    from error_events

),

integers as (

    {{ ops_an_integers(5) }}

),

spine as (

    select
        integers.n as hour_index,
        {{ timestamp_add('bounds.first_hour', 'integers.n', 'hour') }} as hour_start
    from bounds
    cross join integers
    where integers.n <= bounds.last_index

),

hourly_counts as (

    select
        event_family,
        created_hour,
        count(*) as n_events
    from error_events
    group by event_family, created_hour

),

supported_families as (

    select event_family
    from hourly_counts
    group by event_family
    having count(*) >= {{ min_active_hours }}

),

dense as (

    select
        supported_families.event_family,
        spine.hour_index,
        spine.hour_start,
        coalesce(hourly_counts.n_events, 0) as n_events
    from supported_families
    cross join spine
    left join hourly_counts
        on hourly_counts.event_family = supported_families.event_family
       and hourly_counts.created_hour = spine.hour_start

),

final as (

    select
        event_family,
        hour_index,
        hour_start,
        n_events,
        n_events - lag(n_events) over (
            partition by event_family order by hour_index
        ) as diff_events
    from dense

)

select * from final
