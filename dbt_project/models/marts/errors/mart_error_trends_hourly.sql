{{
    config(
        materialized='incremental',
        unique_key='hour_start',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=(
            [
                {'columns': ['hour_start', 'dimension', 'dimension_value'], 'unique': True},
                {'columns': ['hour_start']},
            ] if target.type == 'postgres' else []
        ),
    )
}}

{#-
    Hourly error counts on the dense spine, long format: one row per
    (hour, dimension, dimension_value). See mart_error_trends_hourly.yml.

    Incremental (delete+insert on hour_start): a run recomputes only the hours from
    rebuild_from = (newest hour already here) - var('trend_rebuild_hours', 3) to as_of — or from
    the hour of the oldest event loaded (or marked deleted) since the last build, when that is
    earlier: the extractor's hot window and reconcile bring in rows committed hours or days late,
    and their hours must count them (source_loaded_through, the newest _loaded_at of
    fct_system_events when the rows were built, is the watermark) — reading
    only the events of those hours; the lagged values (previous hour, same hour a week earlier,
    trailing 24-hour baseline) of those hours read the already-built counts of the 168 hours
    before rebuild_from from this table. A full build runs the same code with no prior rows and
    rebuild_from = the spine start.
-#}

{%- set rebuild_hours = var('trend_rebuild_hours', 3) | int %}

with

spine as (

    select * from {{ ref('int_hour_spine') }}

),

events as (

    select * from {{ ref('int_events_classified') }}

),

loaded as not materialized (

    {#- every event row as loaded, deleted ones included (a deletion mark bumps _loaded_at);
        read where used: PostgreSQL copied this CTE whole (the event history) to read it twice -#}
    select * from {{ ref('fct_system_events') }}

),

params as (

    select
        spine_bounds.spine_start,
        {% if is_incremental() -%}
        case
            when built.newest_hour is null then spine_bounds.spine_start
            when least({{ timestamp_add('built.newest_hour', -rebuild_hours, 'hour') }},
                       coalesce(late.first_hour, built.newest_hour)) < spine_bounds.spine_start
                then spine_bounds.spine_start
            else least({{ timestamp_add('built.newest_hour', -rebuild_hours, 'hour') }},
                       coalesce(late.first_hour, built.newest_hour))
        end
        {%- else -%}
        spine_bounds.spine_start
        {%- endif %} as rebuild_from,
        {{ as_of_timestamp() }} as as_of
    from (select min(hour_start) as spine_start from spine) as spine_bounds
    {% if is_incremental() -%}
    cross join (select max(hour_start) as newest_hour from {{ this }}) as built
    cross join (
        {#- rows loaded since the last build (none before the watermark exists: rows built by an
            earlier release keep the rebuild window alone) -#}
        select {{ trunc_utc_hour(ops_oldest_created_at_loaded_after(
            ref('fct_system_events'), 'select max(source_loaded_through) from ' ~ this)) }} as first_hour
    ) as late
    {%- endif %}

),

spine_window as (

    select spine.hour_start
    from spine
    where spine.hour_start >= (select rebuild_from from params)

),

fresh_events as (

    select
        created_hour as hour_start,
        error_family,
        error_category,
        severity,
        component,
        job_name,
        is_error,
        is_operation
    from events
    where created_at >= (select rebuild_from from params)
      and created_at <= (select as_of from params)
      and (is_error or is_operation)

),

error_events as (

    select * from fresh_events where is_error

),

error_counts as (

    select hour_start, 'total' as dimension, 'all' as dimension_value, count(*) as n_errors
    from error_events group by hour_start
    union all
    select hour_start, 'family', error_family, count(*)
    from error_events group by hour_start, error_family
    union all
    select hour_start, 'category', error_category, count(*)
    from error_events group by hour_start, error_category
    union all
    select hour_start, 'severity', severity, count(*)
    from error_events group by hour_start, severity
    union all
    select hour_start, 'component', component, count(*)
    from error_events group by hour_start, component
    union all
    select hour_start, 'job', job_name, count(*)
    from error_events where job_name is not null group by hour_start, job_name

),

operation_counts as (

    select hour_start, count(*) as n_operations
    from fresh_events
    where is_operation
    group by hour_start

),

{% if is_incremental() -%}
prior as (

    select
        hour_start,
        dimension,
        dimension_value,
        n_errors
    from {{ this }}
    where hour_start >= {{ timestamp_add('(select rebuild_from from params)', -168, 'hour') }}
      and hour_start < (select rebuild_from from params)

),
{%- endif %}

series as (

    {#- each series is dense from the first hour it has an error (the total from the spine start) -#}
    select dimension, dimension_value, min(first_hour) as first_hour
    from (
        select dimension, dimension_value, hour_start as first_hour
        from error_counts
        where hour_start in (select hour_start from spine_window)
        union all
        select 'total', 'all', spine_start from params
        {%- if is_incremental() %}
        union all
        select dimension, dimension_value, hour_start from prior
        {%- endif %}
    ) as appearances
    group by dimension, dimension_value

),

grid as (

    select
        spine_window.hour_start,
        series.dimension,
        series.dimension_value,
        coalesce(error_counts.n_errors, 0) as n_errors,
        coalesce(operation_counts.n_operations, 0) as n_operations,
        true as is_fresh
    from spine_window
    inner join series
        on spine_window.hour_start >= series.first_hour
    left join error_counts
        on error_counts.hour_start = spine_window.hour_start
        and error_counts.dimension = series.dimension
        and error_counts.dimension_value = series.dimension_value
    left join operation_counts
        on operation_counts.hour_start = spine_window.hour_start

),

combined as (

    select hour_start, dimension, dimension_value, cast(n_errors as bigint) as n_errors,
           cast(n_operations as bigint) as n_operations, is_fresh
    from grid
    {%- if is_incremental() %}
    union all
    select hour_start, dimension, dimension_value, cast(n_errors as bigint), cast(null as bigint), false
    from prior
    {%- endif %}

),

lagged as (

    select
        combined.*,
        cast(sum(n_errors) over (
            partition by dimension, dimension_value order by hour_start
            range between interval '1 hour' preceding and interval '1 hour' preceding
        ) as bigint) as prev_hour_raw,
        cast(sum(n_errors) over (
            partition by dimension, dimension_value order by hour_start
            range between interval '168 hours' preceding and interval '168 hours' preceding
        ) as bigint) as week_ago_raw,
        cast(sum(n_errors) over (
            partition by dimension, dimension_value order by hour_start
            range between interval '24 hours' preceding and interval '1 hour' preceding
        ) as bigint) as sum_24h_raw
    from combined

),

compared as (

    select
        lagged.hour_start,
        lagged.dimension,
        lagged.dimension_value,
        lagged.n_errors,
        lagged.n_operations,
        case when {{ timestamp_add('lagged.hour_start', -1, 'hour') }} >= params.spine_start
             then coalesce(lagged.prev_hour_raw, 0) end as n_errors_prev_hour,
        case when {{ timestamp_add('lagged.hour_start', -168, 'hour') }} >= params.spine_start
             then coalesce(lagged.week_ago_raw, 0) end as n_errors_week_ago,
        case
            when {{ ops_trend_hours_between('params.spine_start', 'lagged.hour_start') }} <= 0 then null
            else cast(coalesce(lagged.sum_24h_raw, 0) as double precision)
                 / least(24, {{ ops_trend_hours_between('params.spine_start', 'lagged.hour_start') }})
        end as baseline_24h
    from lagged
    cross join params
    where lagged.is_fresh

),

final as (

    select
        hour_start,
        {{ timestamp_add('hour_start', 1, 'hour') }} as hour_end,
        {#- the hour holding as_of is not over: its counts still grow (rebuilt by the next run) #}
        {{ timestamp_add('hour_start', 1, 'hour') }} > (select as_of from params) as is_partial,
        dimension,
        dimension_value,
        n_errors,
        n_operations,
        {{ ops_trend_ratio('n_errors', 'n_operations') }} as error_rate,
        n_errors_prev_hour,
        n_errors - n_errors_prev_hour as change_vs_prev_hour,
        {{ ops_trend_percent('n_errors - n_errors_prev_hour', 'n_errors_prev_hour') }} as pct_change_vs_prev_hour,
        n_errors_week_ago,
        n_errors - n_errors_week_ago as change_vs_week_ago,
        {{ ops_trend_percent('n_errors - n_errors_week_ago', 'n_errors_week_ago') }} as pct_change_vs_week_ago,
        baseline_24h,
        n_errors - baseline_24h as riser_score,
        case
            when n_errors - baseline_24h > 0
            then rank() over (
                partition by hour_start, dimension
                order by n_errors - baseline_24h desc nulls last
            )
        end as riser_rank,
        (select max(_loaded_at) from loaded) as source_loaded_through
    from compared

)

select * from final
