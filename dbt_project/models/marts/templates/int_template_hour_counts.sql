{{
    config(
        materialized='incremental',
        schema='intermediate',
        unique_key='hour_start',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=(
            [{'columns': ['hour_start']}, {'columns': ['source_loaded_through']}]
            if target.type == 'postgres' else []
        ),
    )
}}

{#-
    The error events of each UTC hour per assigned template (as the miner assigned it; follow
    error_template_aliases to the live id downstream), error family and job: counts, first and
    last event, the latest event as an example. The template marts sum these hours instead of
    re-reading 30 or 60 days of events on every run.

    Incremental by hour: a run rebuilds every hour holding an event loaded since the newest
    source_loaded_through here (the extractor's _loaded_at grows strictly; a deletion mark bumps
    it) or an event the miner assigned since the newest templates_assigned_through (a run whose
    mining failed leaves its hours to the next), and nothing else: a back-dated event rebuilds
    its own hour, not the days since. delete+insert on hour_start replaces a rebuilt hour's rows;
    an hour left without template events keeps one marker row (template_id null, n_events 0) so
    its old rows go. See int_template_hour_counts.yml.
-#}

{%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') %}

with

events as not materialized (
    {#- read where used (PostgreSQL would copy a CTE used twice whole: the event history) #}

    select * from {{ ref('fct_system_events') }}

),

event_templates as (

    select * from {{ source('templates', 'error_event_templates') }}

),

{% if is_incremental() %}

{#- the watermarks as literals (one query each when the model compiles; floored to the second,
    so an hour at the watermark may be rebuilt again): bounds written as subqueries leave
    PostgreSQL guessing a third of the rows new, and it may then join the whole history #}
{%- set loaded_through = ops_timestamp_bound('(select coalesce(max(source_loaded_through), ' ~ epoch ~ ') from ' ~ this ~ ')') %}
{%- set assigned_through = ops_timestamp_bound('(select coalesce(max(templates_assigned_through), ' ~ epoch ~ ') from ' ~ this ~ ')') %}

touched_hours as (

    select events.created_hour as hour_start
    from events
    where {{ ops_loaded_after('events._loaded_at', loaded_through) }}

    union

    select events.created_hour
    from event_templates
    inner join events
        on events.event_id = event_templates.event_id
    where event_templates.assigned_at > {{ assigned_through }}

),

hour_events as (

    {#- a range join per touched hour: an index range scan of created_at on PostgreSQL -#}
    select events.*
    from touched_hours
    inner join events
        on events.created_at >= touched_hours.hour_start
       and events.created_at < {{ timestamp_add('touched_hours.hour_start', 1, 'hour') }}

),

{% else %}

touched_hours as (

    select distinct created_hour as hour_start
    from events
    where created_hour is not null

),

hour_events as (

    select * from events

),

{% endif %}

template_events as (

    select
        hour_events.created_hour as hour_start,
        event_templates.template_id,
        {{ ops_trend_error_family('lower(hour_events.event_type)') }} as error_family,
        coalesce(hour_events.job_name, {{ ops_trend_job_from_event_type('lower(hour_events.event_type)') }}) as job_name,
        hour_events.created_at,
        hour_events.event_id,
        coalesce(hour_events.message, hour_events.error_text, hour_events.event_type) as message
    from hour_events
    inner join event_templates
        on event_templates.event_id = hour_events.event_id
    where not hour_events.is_deleted
      and hour_events.created_hour is not null

),

latest as (

    select
        template_events.*,
        row_number() over (
            partition by hour_start, template_id, error_family, job_name
            order by created_at desc, event_id desc
        ) as recency_rank
    from template_events

),

counted as (

    select
        hour_start,
        template_id,
        error_family,
        job_name,
        cast(count(*) as bigint) as n_events,
        min(created_at) as first_created_at,
        max(created_at) as last_created_at,
        max(case when recency_rank = 1 then event_id end) as example_event_id,
        max(case when recency_rank = 1 then message end) as example_message
    from latest
    group by hour_start, template_id, error_family, job_name

),

empty_hours as (

    select touched_hours.hour_start
    from touched_hours
    where not exists (select 1 from counted where counted.hour_start = touched_hours.hour_start)

),

stamped as (

    select
        (select max(_loaded_at) from events) as source_loaded_through,
        (select max(assigned_at) from event_templates) as templates_assigned_through

),

final as (

    select
        counted.hour_start,
        counted.template_id,
        counted.error_family,
        counted.job_name,
        counted.n_events,
        counted.first_created_at,
        counted.last_created_at,
        counted.example_event_id,
        counted.example_message,
        stamped.source_loaded_through,
        stamped.templates_assigned_through
    from counted
    cross join stamped
{%- if is_incremental() %}

    union all

    select
        empty_hours.hour_start,
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(0 as bigint),
        cast(null as timestamp with time zone),
        cast(null as timestamp with time zone),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        stamped.source_loaded_through,
        stamped.templates_assigned_through
    from empty_hours
    cross join stamped
{%- endif %}

)

select * from final
