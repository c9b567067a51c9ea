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
    The event payload contract judged hour by hour as events load: per UTC hour, family,
    writer, payload column, rule, required field and event type, the events checked and those
    lacking the field, with the first and last violation and the latest violating event — the
    rolling aggregate mart_event_contract_violations sums over its window (macros/contracts.sql
    judges the events, the same code the mart uses for the hours its window cuts).

    Incremental by touched hour (delete+insert on hour_start): a run rebuilds the hours of the
    fct_system_events rows loaded or marked deleted since the newest source_loaded_through
    here, with one marker row (family NULL, n_events 0) for a rebuilt hour left without judged
    events. After editing seeds/event_contracts.csv, run with --full-refresh to judge the
    history again.
-#}

{%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') %}

with

{% if is_incremental() %}

touched_hours as (

    select distinct loaded.created_hour as hour_start
    from {{ ref('fct_system_events') }} as loaded
    where {{ ops_loaded_after('loaded._loaded_at',
                              '(select coalesce(max(built.source_loaded_through), ' ~ epoch ~ ') from ' ~ this ~ ' as built)') }}
      and loaded.created_hour is not null

),

events as (

    {{ ops_contract_events("fct.created_hour in (select hour_start from touched_hours)") }}

),

{% else %}

events as (

    {{ ops_contract_events("fct.created_hour is not null") }}

),

touched_hours as (

    select distinct created_hour as hour_start from events

),

{% endif %}

judged as (

    {{ ops_contract_judged('events') }}

),

latest_violation as (

    select
        judged.*,
        row_number() over (
            partition by created_hour, family, writer, payload_column, rule_id, required_field, event_type
            order by is_missing desc, created_at desc, event_id desc
        ) as recency_rank
    from judged

),

counted as (

    select
        created_hour as hour_start,
        family,
        writer,
        payload_column,
        rule_id,
        required_field,
        event_type,
        cast(count(*) as bigint) as n_events,
        cast(sum(is_missing) as bigint) as n_violations,
        min(case when is_missing = 1 then created_at end) as first_violation_at,
        max(case when is_missing = 1 then created_at end) as last_violation_at,
        max(case when recency_rank = 1 and is_missing = 1 then event_id end) as example_event_id
    from latest_violation
    group by created_hour, family, writer, payload_column, rule_id, required_field, event_type

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
    cast(null as {{ dbt.type_string() }}),
    cast(null as {{ dbt.type_string() }}),
    cast(0 as bigint),
    cast(0 as bigint),
    cast(null as timestamp with time zone),
    cast(null as timestamp with time zone),
    cast(null as {{ dbt.type_string() }}),
    stamped.source_loaded_through
from touched_hours
cross join stamped
where not exists (select 1 from counted where counted.hour_start = touched_hours.hour_start)
{%- endif %}
