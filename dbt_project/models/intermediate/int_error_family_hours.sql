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
    The classified events (int_events_classified: every non-deleted event) counted per UTC
    hour, error family, category, component and event type: the rolling aggregate
    dim_error_families sums instead of aggregating the whole history on every run.

    Incremental by touched hour (delete+insert on hour_start): a run rebuilds the hours of the
    fct_system_events rows loaded or marked deleted since the newest source_loaded_through here
    (the fact keeps deletion marks; int_events_classified drops the deleted rows), with one
    marker row (error_family NULL, n_events 0) for a rebuilt hour left without events so that
    its old rows go. See int_error_family_hours.yml.
-#}

{%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') %}

with

classified as not materialized (
    {#- read where used (PostgreSQL would copy a CTE used twice whole: the event history) #}

    select * from {{ ref('int_events_classified') }}

),

{% if is_incremental() %}

watermark as (

    select coalesce(max(source_loaded_through), {{ epoch }}) as loaded_through
    from {{ this }}

),

touched_hours as (

    select distinct loaded.created_hour as hour_start
    from {{ ref('fct_system_events') }} as loaded
    cross join watermark
    where {{ ops_loaded_after('loaded._loaded_at', 'watermark.loaded_through') }}
      and loaded.created_hour is not null

),

hour_events as (

    select classified.*
    from touched_hours
    inner join classified
        on classified.created_at >= touched_hours.hour_start
       and classified.created_at < {{ timestamp_add('touched_hours.hour_start', 1, 'hour') }}

),

{% else %}

hour_events as (

    select * from classified

),

touched_hours as (

    select distinct created_hour as hour_start
    from hour_events
    where created_hour is not null

),

{% endif %}

counted as (

    select
        created_hour as hour_start,
        error_family,
        error_category,
        component,
        event_type,
        cast(count(*) as bigint) as n_events,
        cast(sum(case when is_error then 1 else 0 end) as bigint) as n_error_events,
        min(created_at) as first_created_at,
        max(created_at) as last_created_at
    from hour_events
    where created_hour is not null
    group by created_hour, error_family, error_category, component, event_type

),

stamped as (

    select max(_loaded_at) as source_loaded_through
    from {{ ref('fct_system_events') }}

)

select counted.*, stamped.source_loaded_through
from counted
cross join stamped

{%- if is_incremental() %}

union all

select
    touched_hours.hour_start,
    cast(null as {{ dbt.type_string() }}),
    cast(null as {{ dbt.type_string() }}),
    cast(null as {{ dbt.type_string() }}),
    cast(null as {{ dbt.type_string() }}),
    cast(0 as bigint),
    cast(0 as bigint),
    cast(null as timestamp with time zone),
    cast(null as timestamp with time zone),
    stamped.source_loaded_through
from touched_hours
cross join stamped
where not exists (select 1 from counted where counted.hour_start = touched_hours.hour_start)
{%- endif %}
