{#-
    The most common error templates over the 7 and 30 days ending var('as_of'), with share,
    rank, an example, the families and jobs each appears in and the trend against the previous
    window of the same length: mart_error_rank_7d_30d at the grain of a template. Reads only the
    events of the 60 days before as_of (two 30-day windows). See mart_template_rank_7d_30d.yml.
-#}

{%- set min_increase = var('trend_riser_min_increase', 5) | int %}
{%- set min_ratio = var('trend_riser_min_ratio', 1.5) | float %}

with

event_templates as (

    select * from {{ source('templates', 'error_event_templates') }}

),

aliases as (

    select * from {{ source('templates', 'error_template_aliases') }}

),

templates as (

    select * from {{ source('templates', 'mart_error_templates') }}

),

events as (

    select * from {{ ref('fct_system_events') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

windows as (

    select 7 as window_days
    union all
    select 30

),

coverage as (

    {#- does the data reach back to the start of each previous window? The family ranking's test
        (spine start <= as_of - 2n days), as an uncorrelated EXISTS that stops at the first old
        event, so it does not read the history. -#}
    {%- for days in [7, 30] %}
    select
        {{ days }} as window_days,
        exists (
            select 1
            from events
            where events.created_at < {{ timestamp_add(trunc_utc_hour(timestamp_add(as_of_timestamp(), -48 * days, 'hour')), 1, 'hour') }}
        ) as has_prev_window
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

recent_events as (

    {#- the error events of the 60 days before as_of, with their live template (constant
        bounds, so only those days are read) -#}
    select
        events.event_id,
        events.created_at,
        {{ ops_trend_error_family('lower(events.event_type)') }} as error_family,
        coalesce(events.job_name, {{ ops_trend_job_from_event_type('lower(events.event_type)') }}) as job_name,
        coalesce(events.message, events.error_text, events.event_type) as message,
        coalesce(aliases.template_id, event_templates.template_id) as template_id
    from events
    inner join event_templates
        on event_templates.event_id = events.event_id
    left join aliases
        on aliases.old_id = event_templates.template_id
    where events.created_at > {{ timestamp_add(as_of_timestamp(), -48 * 30, 'hour') }}
      and events.created_at <= {{ as_of_timestamp() }}
      and not events.is_deleted

),

windowed as (

    {#- each event of the current window (as_of - n days, as_of] or of the previous one -#}
    select
        windows.window_days,
        {{ timestamp_add('params.as_of', '-24 * windows.window_days', 'hour') }} as window_start,
        params.as_of as window_end,
        recent_events.*,
        recent_events.created_at > {{ timestamp_add('params.as_of', '-24 * windows.window_days', 'hour') }}
            as is_current,
        coverage.has_prev_window
    from recent_events
    cross join params
    inner join windows
        on recent_events.created_at > {{ timestamp_add('params.as_of', '-48 * windows.window_days', 'hour') }}
    inner join coverage
        on coverage.window_days = windows.window_days

),

counted as (

    select
        window_days,
        min(window_start) as window_start,
        min(window_end) as window_end,
        template_id,
        cast(count(case when is_current then 1 end) as bigint) as n_events,
        case when bool_and(has_prev_window)
             then cast(count(case when not is_current then 1 end) as bigint) end as n_events_prev_window,
        min(case when is_current then created_at end) as first_seen_at,
        max(case when is_current then created_at end) as last_seen_at,
        {{ ops_an_distinct_list('case when is_current then error_family end') }} as error_families,
        {{ ops_an_distinct_list('case when is_current then job_name end') }} as job_names
    from windowed
    group by window_days, template_id

),

examples as (

    select window_days, template_id, message
    from (
        select
            window_days,
            template_id,
            message,
            row_number() over (
                partition by window_days, template_id
                order by created_at desc, event_id desc
            ) as example_rank
        from windowed
        where is_current
    ) as ranked
    where example_rank = 1

),

final as (

    select
        counted.window_days,
        counted.window_start,
        counted.window_end,
        counted.template_id,
        templates.template,
        counted.n_events,
        {{ ops_trend_ratio('counted.n_events', 'sum(counted.n_events) over (partition by counted.window_days)') }}
            as share_of_errors,
        rank() over (
            partition by counted.window_days
            order by counted.n_events desc
        ) as template_rank,
        counted.n_events_prev_window,
        counted.n_events - counted.n_events_prev_window as change_vs_prev_window,
        {{ ops_trend_percent('counted.n_events - counted.n_events_prev_window', 'counted.n_events_prev_window') }}
            as pct_change_vs_prev_window,
        coalesce(
            counted.n_events - counted.n_events_prev_window >= {{ min_increase }}
            and counted.n_events >= {{ min_ratio }} * counted.n_events_prev_window,
            false
        ) as is_riser,
        case
            when counted.n_events_prev_window is null then 'unknown'
            when counted.n_events_prev_window = 0 then 'new'
            when counted.n_events - counted.n_events_prev_window >= {{ min_increase }}
             and counted.n_events >= {{ min_ratio }} * counted.n_events_prev_window then 'rising'
            when counted.n_events_prev_window - counted.n_events >= {{ min_increase }}
             and counted.n_events_prev_window >= {{ min_ratio }} * counted.n_events then 'falling'
            else 'steady'
        end as trend,
        counted.first_seen_at,
        counted.last_seen_at,
        templates.first_seen_at as template_first_seen_at,
        coalesce(templates.first_seen_at > counted.window_start, false) as is_new,
        counted.error_families,
        counted.job_names,
        examples.message as example_message
    from counted
    inner join examples
        on counted.window_days = examples.window_days
        and counted.template_id = examples.template_id
    left join templates
        on templates.template_id = counted.template_id
    where counted.n_events > 0

)

select * from final
