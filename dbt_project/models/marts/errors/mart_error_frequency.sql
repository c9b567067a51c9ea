{#-
    The improvement checklist's "Most common errors in the last 7 days", as a mart:

        SELECT event_type, COUNT(*) AS error_count,
               COUNT(DISTINCT DATE(created_at)) AS days_with_errors
        FROM system_events
        WHERE created_at > NOW() - INTERVAL '7 days' AND severity IN ('error', 'critical')
        GROUP BY event_type ORDER BY error_count DESC;

    error_count and days_with_errors are computed exactly so (raw severity, UTC dates), on the
    events that still exist in the source (int_error_events excludes deleted ones). The window ends at
    var('as_of') (default: now) and, unlike the checklist, is also bounded above by it.
    Extra columns use the normalised severity; see mart_error_frequency.yml.
-#}

with

events as (

    select * from {{ ref('int_error_events') }}

),

params as (

    select
        {{ timestamp_add(as_of_timestamp(), -168, 'hour') }} as window_start,
        {{ as_of_timestamp() }} as window_end

),

windowed as (

    select
        events.event_id,
        events.event_type,
        events.created_at,
        events.severity,
        events.is_checklist_error,
        events.message,
        events.error_text,
        params.window_start,
        params.window_end
    from events
    cross join params
    where events.created_at > params.window_start
      and events.created_at <= params.window_end

),

latest_example as (

    select
        event_type,
        message as example_message,
        error_text as example_error_text
    from (
        select
            event_type,
            message,
            error_text,
            row_number() over (
                partition by event_type
                order by created_at desc, event_id desc
            ) as example_rank
        from windowed
    ) ranked
    where example_rank = 1

),

aggregated as (

    select
        event_type,
        min(window_start) as window_start,
        min(window_end) as window_end,
        count(case when is_checklist_error then 1 end) as error_count,
        count(distinct case when is_checklist_error then {{ to_utc_date('created_at') }} end)
            as days_with_errors,
        count(*) as error_count_normalised,
        count(case when severity = 'critical' then 1 end) as critical_count,
        count(distinct {{ to_utc_date('created_at') }}) as days_with_errors_normalised,
        min(created_at) as first_seen_at,
        max(created_at) as last_seen_at
    from windowed
    group by event_type

),

final as (

    select
        aggregated.window_start,
        aggregated.window_end,
        aggregated.event_type,
        aggregated.error_count,
        aggregated.days_with_errors,
        aggregated.error_count > 0 as is_in_checklist,
        aggregated.error_count_normalised,
        aggregated.critical_count,
        aggregated.days_with_errors_normalised,
        cast(aggregated.error_count as double precision)
            / nullif(cast(sum(aggregated.error_count) over () as double precision), 0) as share_of_errors,
        cast(aggregated.error_count_normalised as double precision)
            / nullif(cast(sum(aggregated.error_count_normalised) over () as double precision), 0) as share_of_errors_normalised,
        aggregated.first_seen_at,
        aggregated.last_seen_at,
        latest_example.example_message,
        latest_example.example_error_text,
        rank() over (
            order by aggregated.error_count desc, aggregated.error_count_normalised desc
        ) as error_rank
    from aggregated
    inner join latest_example
        on aggregated.event_type = latest_example.event_type

)

select * from final
