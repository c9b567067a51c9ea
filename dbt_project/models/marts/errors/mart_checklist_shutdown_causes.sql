{#-
    The improvement checklist's "Errors that cause system shutdowns", as a mart:

        SELECT event_type, event_data->>'component' as component, COUNT(*) as shutdown_count
        FROM system_events
        WHERE event_type LIKE '%shutdown%' OR event_type LIKE '%block%' OR severity = 'critical'
        GROUP BY event_type, component ORDER BY shutdown_count DESC;

    shutdown_count reproduces it exactly (case-sensitive LIKE, raw severity, the component from
    the event_data column only, all time, events still in the source). The extra columns apply
    the intent the literal query misses (case-insensitive match — the real gates are
    POSTING_QUEUE_BLOCKED — and normalised severity) and tie the rows to the detected shutdown
    episodes (mart_shutdown_episodes), since the system writes no shutdown event.
-#}

with

events as (

    select * from {{ ref('fct_system_events') }}

),

episodes as (

    select * from {{ ref('mart_shutdown_episodes') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

candidates as (

    select
        events.event_id,
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

final as (

    select
        event_type,
        component,
        count(case when is_checklist_match then 1 end) as shutdown_count,
        count(case when is_checklist_match then 1 end) > 0 as is_in_checklist,
        count(*) as match_count_normalised,
        count(case when is_in_shutdown then 1 end) as n_in_shutdown_episodes,
        cast(count(case when is_in_shutdown then 1 end) as double precision) / count(*) as share_in_shutdown_episodes,
        min(created_at) as first_seen_at,
        max(created_at) as last_seen_at,
        rank() over (
            order by count(case when is_checklist_match then 1 end) desc, count(*) desc
        ) as shutdown_rank
    from matched
    group by event_type, component

)

select * from final
