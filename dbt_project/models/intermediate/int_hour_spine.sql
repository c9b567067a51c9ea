{#-
    The dense hourly time spine of the error trends: every UTC hour from the hour of the first
    event to the hour holding var('as_of') (default now), excluding an hour starting at or after
    as_of. One row per hour, with its end and its index from the spine start.
-#}

with

events as (

    select * from {{ ref('fct_system_events') }}

),

bounds as (

    select
        {{ trunc_utc_hour('min(created_at)') }} as spine_start,
        {{ as_of_timestamp() }} as as_of
    from events

),

sized as (

    select
        spine_start,
        as_of,
        case
            when spine_start is null or spine_start >= as_of then 0
            else {{ ops_trend_hours_between('spine_start', 'as_of') }}
                 + case when {{ timestamp_add('spine_start', ops_trend_hours_between('spine_start', 'as_of'), 'hour') }} < as_of
                        then 1 else 0 end
        end as n_hours
    from bounds

),

final as (

    select
        {{ timestamp_add('sized.spine_start', 'integer_series.offset_n', 'hour') }} as hour_start,
        {{ timestamp_add('sized.spine_start', 'integer_series.offset_n + 1', 'hour') }} as hour_end,
        cast(integer_series.offset_n as bigint) as hour_index
    from sized
    cross join {{ ops_trend_integer_series('(select n_hours from sized)') }}

)

select * from final
