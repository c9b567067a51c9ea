{#-
    The dense hourly time spine of the trend and posting marts: every UTC hour from the hour of
    the earliest row of any source (events; decisions, posting attempts and scraper runs through
    raw._extract_state.data_from, which the extractor keeps) to the
    hour holding var('as_of') (default now), excluding an hour starting at or after as_of. Only
    rows stamped from var('time_floor') to as_of can start it: a row with a broken clock (a 1970
    event that slipped into raw) or stamped after as_of never stretches the spine or any series
    built on it. One row per hour, with its end and its index from the spine start.
-#}

{%- set time_floor = var('time_floor', '2020-01-01T00:00:00+00:00') %}

with

events as (

    select * from {{ ref('fct_system_events') }}

),

extract_state as (

    {#- where each source table's data starts (data_from: the earliest live row, kept by the
        extractor), read from its bookkeeping rather than from the tables: an extract that fails
        in this run must not keep the spine, and every series on it, from being built -#}
    select * from {{ source('ops', '_extract_state') }}

),

params as (

    {#- the floor rounded up to a whole hour, so the spine never starts before it -#}
    select
        case
            when {{ trunc_utc_hour(timestamptz_literal(time_floor)) }} < {{ timestamptz_literal(time_floor) }}
                then {{ timestamp_add(trunc_utc_hour(timestamptz_literal(time_floor)), 1, 'hour') }}
            else {{ timestamptz_literal(time_floor) }}
        end as floor_at,
        {{ as_of_timestamp() }} as as_of

),

source_starts as (

    {#- each source's first row within [floor, as_of]: the events' own (deleted ones included:
        the data's start), and the other tables' from the extractor's bookkeeping -#}
    select min(created_at) as first_at
    from events
    where created_at >= (select floor_at from params)
      and created_at <= (select as_of from params)

    union all

    select min(data_from) as first_at
    from extract_state
    where data_from >= (select floor_at from params)
      and data_from <= (select as_of from params)

),

bounds as (

    select
        {{ trunc_utc_hour('min(first_at)') }} as spine_start,
        (select as_of from params) as as_of
    from source_starts

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
