-- depends_on: {{ ref('int_shutdown_signals') }}
{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook=["{{ ops_postgres_plan_hints(seq_scans=false) }}", "{{ ops_delete_days_to_rebuild(include_newest_day=false) }}"],
    )
}}

{#-
    mart_checklist_shutdown_causes by UTC day of created_at: per day, event_type and the
    checklist's component, the events (not deleted) matching the checklist's literal filter or its
    normalised version, how many of them fall inside a shutdown episode (mart_shutdown_episodes),
    and the first and last. The mart sums the days.

    Incremental by day (delete + insert on day_start_at). A day changes when a row of it is loaded
    (new, changed, or marked deleted: the mark gets a new, larger _loaded_at) or when an episode overlapping it
    is recomputed — episodes are recomputed from the shutdown rebuild anchor on, and an episode
    starts at or after its last success, so only days from the anchor's are concerned. The
    pre-hook deletes the days from the earliest of the anchor's UTC day and the day of the oldest
    fct_system_events row loaded after this table's watermark (source_loaded_through, minus
    var('fct_lookback_hours'), default 0); the run then rebuilds every day after the newest day left (never
    later than the first deleted one, so the pre-hook and the run cannot disagree). A full build
    runs the same code over all of fct_system_events.
-#}

{%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') %}

with

{% if is_incremental() -%}
bounds as (

    select coalesce({{ timestamp_add('max(built.day_start_at)', 24, 'hour') }}, {{ epoch }}) as rebuild_from
    from {{ this }} as built

),
{%- endif %}

events as not materialized (
    {#- read where used (PostgreSQL would copy a CTE used twice whole: the event history) #}

    select * from {{ ref('fct_system_events') }}
    {%- if is_incremental() %}
    where created_at >= (select rebuild_from from bounds)
    {%- endif %}

),

episodes as (

    select * from {{ ref('mart_shutdown_episodes') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

candidates as (

    select
        events.event_type,
        case when events.payload_column = 'event_data'
            then {{ json_text('events.payload', 'component') }} end as component,
        events.created_at,
        (
            events.event_type like '%shutdown%'
            or events.event_type like '%block%'
            or coalesce(events.severity_raw = 'critical', false)
        ) as is_checklist_match,
        (
            lower(events.event_type) like '%shutdown%'
            or lower(events.event_type) like '%block%'
            or events.severity = 'critical'
        ) as is_normalised_match
    from events
    where not events.is_deleted

),

matched as (

    select
        candidates.*,
        exists (
            select 1
            from episodes
            cross join params
            where candidates.created_at >= episodes.shutdown_start_at
              and candidates.created_at < coalesce(episodes.shutdown_end_at, params.as_of)
        ) as is_in_shutdown
    from candidates
    where is_checklist_match or is_normalised_match

),

loaded as (

    {#- the newest load of any row (deleted ones included) in the days rebuilt: the watermark #}
    select max(_loaded_at) as source_loaded_through
    from events

),

final as (

    select
        {{ ops_utc_day_start('matched.created_at') }} as day_start_at,
        matched.event_type,
        matched.component,
        count(case when matched.is_checklist_match then 1 end) as n_checklist_matches,
        count(*) as n_matches,
        count(case when matched.is_in_shutdown then 1 end) as n_in_shutdown_episodes,
        min(matched.created_at) as first_seen_at,
        max(matched.created_at) as last_seen_at,
        max(loaded.source_loaded_through) as source_loaded_through
    from matched
    cross join loaded
    group by 1, matched.event_type, matched.component

)

select * from final
