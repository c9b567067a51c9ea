{{ config(post_hook="{{ ops_update_template_window_counts() }}") }}

{#-
    The most common error templates over the 7 and 30 days ending var('as_of'), with share,
    rank, an example, the families and jobs each appears in and the trend against the previous
    window of the same length: mart_error_rank_7d_30d at the grain of a template. Sums the hours
    of the 60 days before as_of (two 30-day windows) from int_template_hour_counts, and reads
    events only for the hours a window boundary cuts. See mart_template_rank_7d_30d.yml.
-#}

{%- set min_increase = var('trend_riser_min_increase', 5) | int %}
{%- set min_ratio = var('trend_riser_min_ratio', 1.5) | float %}
{#- hours before as_of of the window boundaries: as_of, as_of − n days, as_of − 2n days #}
{%- set split_hours_back = [0, 24 * 7, 48 * 7, 24 * 30, 48 * 30] %}

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

events as not materialized (
    {#- read where used (PostgreSQL would copy a CTE used twice whole: the event history) #}

    select * from {{ ref('fct_system_events') }}

),

hour_counts as (

    select * from {{ ref('int_template_hour_counts') }}

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
        (spine start <= as_of - 2n days), on the first event's time: an index lookup on
        PostgreSQL (an EXISTS with a range scanned the table from the wrong end) -#}
    {%- for days in [7, 30] %}
    select
        {{ days }} as window_days,
        coalesce(
            (select min(events.created_at) from events)
                < {{ timestamp_add(trunc_utc_hour(timestamp_add(as_of_timestamp(), -48 * days, 'hour')), 1, 'hour') }},
            false
        ) as has_prev_window
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

split_hours as (

    {#- the UTC hours holding a window boundary (as_of − 2n days, as_of − n days, as_of): their
        events are read one by one (a range per hour, so PostgreSQL plans index scans), since a
        boundary cuts them; every other hour of the 60 days lies inside one window and comes
        summed from int_template_hour_counts -#}
    {%- for hours_back in split_hours_back %}
    select {{ trunc_utc_hour(timestamp_add(as_of_timestamp(), -hours_back, 'hour')) }} as hour_start
    {%- if not loop.last %}
    union
    {%- endif %}
    {%- endfor %}

),

pieces as (

    {#- the error events of the 60 days before as_of with their live template, as pieces: a
        whole hour's count (at_ its middle) or one event of a split hour (at_ its time) -#}
    select
        coalesce(aliases.template_id, counts.template_id) as template_id,
        counts.error_family,
        counts.job_name,
        {{ timestamp_add('counts.hour_start', 30, 'minute') }} as at_,
        counts.n_events,
        counts.first_created_at,
        counts.last_created_at,
        counts.last_created_at as example_created_at,
        counts.example_event_id,
        counts.example_message
    from hour_counts as counts
    left join aliases
        on aliases.old_id = counts.template_id
    where counts.template_id is not null
      and counts.hour_start >= {{ trunc_utc_hour(timestamp_add(as_of_timestamp(), -48 * 30, 'hour')) }}
      and counts.hour_start <= {{ trunc_utc_hour(as_of_timestamp()) }}
      and counts.hour_start not in (select hour_start from split_hours)

    union all

    select
        coalesce(aliases.template_id, event_templates.template_id),
        {{ ops_trend_error_family('lower(events.event_type)') }},
        coalesce(events.job_name, {{ ops_trend_job_from_event_type('lower(events.event_type)') }}),
        events.created_at,
        1,
        events.created_at,
        events.created_at,
        events.created_at,
        events.event_id,
        coalesce(events.message, events.error_text, events.event_type)
    from events
    inner join event_templates
        on event_templates.event_id = events.event_id
    left join aliases
        on aliases.old_id = event_templates.template_id
    where not events.is_deleted
      and (
        {%- for hours_back in split_hours_back %}
        {%- set split_hour = trunc_utc_hour(timestamp_add(as_of_timestamp(), -hours_back, 'hour')) %}
        {% if not loop.first %}or {% endif %}(events.created_at >= {{ split_hour }} and events.created_at < {{ timestamp_add(split_hour, 1, 'hour') }})
        {%- endfor %}
      )

),

recent_pieces as (

    select *
    from pieces
    where at_ > {{ timestamp_add(as_of_timestamp(), -48 * 30, 'hour') }}
      and at_ <= {{ as_of_timestamp() }}

),

windowed as (

    {#- each piece of the current window (as_of - n days, as_of] or of the previous one -#}
    select
        windows.window_days,
        {{ timestamp_add('params.as_of', '-24 * windows.window_days', 'hour') }} as window_start,
        params.as_of as window_end,
        recent_pieces.*,
        recent_pieces.at_ > {{ timestamp_add('params.as_of', '-24 * windows.window_days', 'hour') }}
            as is_current,
        coverage.has_prev_window
    from recent_pieces
    cross join params
    inner join windows
        on recent_pieces.at_ > {{ timestamp_add('params.as_of', '-48 * windows.window_days', 'hour') }}
    inner join coverage
        on coverage.window_days = windows.window_days

),

counted as (

    select
        window_days,
        min(window_start) as window_start,
        min(window_end) as window_end,
        template_id,
        cast(sum(case when is_current then n_events else 0 end) as bigint) as n_events,
        case when bool_and(has_prev_window)
             then cast(sum(case when not is_current then n_events else 0 end) as bigint) end as n_events_prev_window,
        min(case when is_current then first_created_at end) as first_seen_at,
        max(case when is_current then last_created_at end) as last_seen_at,
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
            example_message as message,
            row_number() over (
                partition by window_days, template_id
                order by example_created_at desc, example_event_id desc
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
