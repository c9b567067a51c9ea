{{
    config(
        materialized='incremental',
        unique_key='hour_start',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=([{'columns': ['hour_start']}] if target.type == 'postgres' else []),
    )
}}

{#-
    The executor's health samples (EXECUTOR_HEALTH_OK / _DEGRADED, not deleted) summed per UTC
    hour: samples, and those carrying browser_pool_active with browser_pool_max_contexts > 0
    with both sums — the browser pool utilisation of mart_slo_scorecard (checklist 2.1), read
    from these hours instead of every sample of eight weeks.

    Incremental by touched hour (delete+insert on hour_start): a run rebuilds the hours of the
    health events loaded (or marked deleted) since the newest source_loaded_through here — one
    row per rebuilt hour, with zeros when its samples are gone. See int_executor_health_hours.yml.
-#}

{%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') %}
{%- set health_types = "('EXECUTOR_HEALTH_OK', 'EXECUTOR_HEALTH_DEGRADED')" %}

with

events as not materialized (
    {#- read where used (PostgreSQL would copy a CTE used twice whole: the event history) #}

    select * from {{ ref('fct_system_events') }}

),

{% if is_incremental() %}

watermark as (

    select coalesce(max(source_loaded_through), {{ epoch }}) as loaded_through
    from {{ this }}

),

touched_hours as (

    select distinct events.created_hour as hour_start
    from events
    cross join watermark
    where {{ ops_loaded_after('events._loaded_at', 'watermark.loaded_through') }}
      and events.event_type in {{ health_types }}
      and events.created_hour is not null

),

hour_events as (

    select events.*
    from touched_hours
    inner join events
        on events.created_at >= touched_hours.hour_start
       and events.created_at < {{ timestamp_add('touched_hours.hour_start', 1, 'hour') }}
    where events.event_type in {{ health_types }}

),

{% else %}

hour_events as (

    select * from events
    where event_type in {{ health_types }}

),

touched_hours as (

    select distinct created_hour as hour_start
    from hour_events
    where created_hour is not null

),

{% endif %}

samples as (

    select
        created_hour as hour_start,
        {{ safe_cast_bigint(json_text('payload', 'browser_pool_active')) }} as pool_active,
        {{ safe_cast_bigint(json_text('payload', 'browser_pool_max_contexts')) }} as pool_max_contexts
    from hour_events
    where not is_deleted

),

hourly as (

    select
        hour_start,
        cast(count(*) as bigint) as n_samples,
        cast(count(case when pool_active is not null and pool_max_contexts > 0 then 1 end) as bigint) as n_pool_samples,
        cast(sum(case when pool_active is not null and pool_max_contexts > 0 then pool_active end) as bigint)
            as pool_active_sum,
        cast(sum(case when pool_active is not null and pool_max_contexts > 0 then pool_max_contexts end) as bigint)
            as pool_max_contexts_sum
    from samples
    group by hour_start

)

select
    touched_hours.hour_start,
    coalesce(hourly.n_samples, 0) as n_samples,
    coalesce(hourly.n_pool_samples, 0) as n_pool_samples,
    hourly.pool_active_sum,
    hourly.pool_max_contexts_sum,
    (select max(_loaded_at) from events) as source_loaded_through
from touched_hours
left join hourly
    on hourly.hour_start = touched_hours.hour_start
