{{ config(materialized='table', schema='intermediate') }}

{#-
    Dense hourly error-event counts per live error template, with first differences: the input
    of ops_corr_matrix for mart_template_correlation. The spine is the var('corr_window_days', 30)
    days of UTC hours ending at the hour holding var('as_of') (an hour starting exactly at as_of
    is not included; it holds nothing yet), starting later when the data does (at the hour of the
    first event, as the family series do); a template enters when it is active in at least
    var('corr_min_active_hours', 5) of those hours. Sums int_template_hour_counts; reads events
    only for the hour holding as_of (and the window's first event time, by index).
-#}

{%- set window_days = var('corr_window_days', 30) | int %}
{%- set n_hours = 24 * window_days %}
{%- set min_active_hours = var('corr_min_active_hours', 5) | int %}
{%- set as_of = as_of_timestamp() %}
{%- set last_hour -%}
    (case when {{ trunc_utc_hour(as_of) }} = {{ as_of }} then {{ timestamp_add(trunc_utc_hour(as_of), -1, 'hour') }}
          else {{ trunc_utc_hour(as_of) }} end)
{%- endset %}
{%- set window_start = timestamp_add(last_hour, -(n_hours - 1), 'hour') %}

with

event_templates as (

    select * from {{ source('templates', 'error_event_templates') }}

),

aliases as (

    select * from {{ source('templates', 'error_template_aliases') }}

),

events as not materialized (
    {#- read where used (PostgreSQL would copy a CTE used twice whole: the event history) #}

    select * from {{ ref('fct_system_events') }}

),

hour_counts as (

    select * from {{ ref('int_template_hour_counts') }}

),

params as (

    {#- last_hour: the hour holding as_of, or the one before when as_of is an hour start;
        first_hour: corr_window_days before, or the hour of the first event when the data starts
        later (templates are events: the trend spine, which also spans decisions, attempts and
        scraper runs, can start earlier in a warehouse younger than the window). Constant
        bounds, so only the window is read. -#}
    select
        {{ as_of }} as as_of,
        {{ last_hour }} as last_hour,
        coalesce(
            (
                select {{ trunc_utc_hour('min(window_events.created_at)') }}
                from events as window_events
                where window_events.created_at >= {{ window_start }}
                  and window_events.created_at <= {{ as_of }}
            ),
            {{ window_start }}
        ) as first_hour

),

integers as (

    {{ ops_an_integers((n_hours - 1) | string | length) }}

),

spine as (

    select
        cast(integers.n as integer) as hour_index,
        {{ timestamp_add('params.first_hour', 'integers.n', 'hour') }} as hour_start
    from params
    cross join integers
    where integers.n <= {{ ops_an_hours_between('params.first_hour', 'params.last_hour') }}

),

hourly_counts as (

    {#- whole hours before the one holding as_of from the hourly counts; that hour's events up to
        as_of one by one (the window starts on an hour, so no other hour is cut) -#}
    select template_id, hour_start, sum(n_events) as n_events
    from (
        select
            coalesce(aliases.template_id, counts.template_id) as template_id,
            counts.hour_start,
            counts.n_events
        from hour_counts as counts
        left join aliases
            on aliases.old_id = counts.template_id
        where counts.template_id is not null
          and counts.hour_start >= {{ window_start }}
          and counts.hour_start < {{ trunc_utc_hour(as_of) }}

        union all

        select
            coalesce(aliases.template_id, event_templates.template_id),
            {{ trunc_utc_hour('events.created_at') }},
            1
        from events
        inner join event_templates
            on event_templates.event_id = events.event_id
        left join aliases
            on aliases.old_id = event_templates.template_id
        where events.created_at >= {{ trunc_utc_hour(as_of) }}
          and events.created_at >= {{ window_start }}
          and events.created_at <= {{ as_of }}
          and not events.is_deleted
    ) as pieces
    group by template_id, hour_start

),

supported_templates as (

    select template_id
    from hourly_counts
    group by template_id
    having count(*) >= {{ min_active_hours }}

),

dense as (

    select
        supported_templates.template_id,
        spine.hour_index,
        spine.hour_start,
        cast(coalesce(hourly_counts.n_events, 0) as bigint) as n_events
    from supported_templates
    cross join spine
    left join hourly_counts
        on hourly_counts.template_id = supported_templates.template_id
       and hourly_counts.hour_start = spine.hour_start

),

final as (

    select
        template_id as series_key,
        hour_index,
        hour_start,
        n_events,
        n_events - lag(n_events) over (
            partition by template_id order by hour_index
        ) as diff_events
    from dense

)

select * from final
