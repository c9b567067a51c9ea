{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where hour_start >= {{ ops_co_logging_rebuild_from() }}{% endif %}",
        indexes=(
            [{'columns': ['hour_start']}, {'columns': ['source_loaded_through']}]
            if target.type == 'postgres' else []
        ),
    )
}}

{#-
    Co-logging per UTC hour (the hour of A's event), over every error event loaded, whatever
    as_of: per error family its error events (family_b NULL), and per ordered pair (A, B) A's
    events with an event of B on the same decision or job within the gap (macros/co_logging.sql).
    int_error_family_co_logging sums the hours of its window instead of pairing 30 days of events
    on every run.

    Incremental: the pre-hook deletes the hours from R = the hour before that of the oldest
    fct_system_events row loaded (or marked deleted) since the newest source_loaded_through here
    (a new or deleted event changes its own hour and, through a partner within the gap, the
    adjacent one); the run recomputes every hour from R on, reading the error events from an hour
    before R (the partners of R's first events). A run with nothing new rebuilds nothing.
-#}

{#- the first hour rebuilt as a literal (an hour boundary: the pre-hook's instant) #}
{%- set rebuild_from = ops_timestamp_bound(ops_co_logging_rebuild_from()) if is_incremental() else none %}

with

error_events as (

    {{ ops_co_logging_error_events(
        ('created_at >= ' ~ timestamp_add(rebuild_from, -1, 'hour')) if is_incremental() else 'true') }}

),

hour_of_event as (

    select event_id, {{ trunc_utc_hour('created_at') }} as hour_start
    from error_events
    {%- if is_incremental() %}
    where created_at >= {{ rebuild_from }}
    {%- endif %}

),

co_logged as (

    select hour_of_event.hour_start, partnered.family_a, partnered.family_b, count(*) as n_events
    from ({{ ops_co_logged_events('error_events') }}) as partnered
    inner join hour_of_event on hour_of_event.event_id = partnered.event_id
    group by hour_of_event.hour_start, partnered.family_a, partnered.family_b

),

family_events as (

    select hour_of_event.hour_start, error_events.error_family as family_a,
           cast(null as {{ dbt.type_string() }}) as family_b, count(*) as n_events
    from error_events
    inner join hour_of_event on hour_of_event.event_id = error_events.event_id
    group by hour_of_event.hour_start, error_events.error_family

)

select
    counted.hour_start,
    counted.family_a,
    counted.family_b,
    cast(counted.n_events as bigint) as n_events,
    loaded.source_loaded_through
from (
    select * from family_events
    union all
    select * from co_logged
) as counted
cross join (select max(_loaded_at) as source_loaded_through from {{ ref('fct_system_events') }}) as loaded
