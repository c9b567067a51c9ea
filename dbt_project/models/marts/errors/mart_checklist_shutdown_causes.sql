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

    Sums the per-day counts of int_checklist_shutdown_days (incremental; same numbers as scanning
    all of fct_system_events, which that model does only on a full build).
-#}

with

days as (

    select * from {{ ref('int_checklist_shutdown_days') }}

),

summed as (

    select
        event_type,
        component,
        cast(sum(n_checklist_matches) as bigint) as shutdown_count,
        sum(n_checklist_matches) > 0 as is_in_checklist,
        cast(sum(n_matches) as bigint) as match_count_normalised,
        cast(sum(n_in_shutdown_episodes) as bigint) as n_in_shutdown_episodes,
        cast(sum(n_in_shutdown_episodes) as double precision) / cast(sum(n_matches) as double precision)
            as share_in_shutdown_episodes,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        rank() over (
            order by sum(n_checklist_matches) desc, sum(n_matches) desc
        ) as shutdown_rank
    from days
    group by event_type, component

),

final as (

    select
        summed.*,
        {#- why the checklist's literal count is what it is, on the row itself -#}
        case
            when shutdown_count > 0
                then 'shutdown_count = ' || cast(shutdown_count as varchar)
                     || ': the checklist counts, all time, every event whose type contains ''shutdown'' or ''block'' '
                     || '(case-sensitive) or whose raw severity is ''critical''; here '
                     || case when event_type like '%shutdown%' or event_type like '%block%'
                             then 'the type matches.' else 'the raw severity is critical.' end
            else 'shutdown_count = 0 (not in the checklist''s result): '
                 || case when lower(event_type) like '%shutdown%' or lower(event_type) like '%block%'
                         then 'the type contains shutdown / block only in another case, and the checklist''s LIKE is case-sensitive.'
                         else 'the severity is critical only once normalised, and the checklist compares the raw value.' end
        end
        || ' The bot writes no shutdown event: ' || cast(n_in_shutdown_episodes as varchar) || ' of '
        || cast(match_count_normalised as varchar)
        || ' matching events (normalised) fell inside a detected shutdown (mart_shutdown_episodes; causes ranked in mart_shutdown_causes).'
            as checklist_note
    from summed

)

select * from final
