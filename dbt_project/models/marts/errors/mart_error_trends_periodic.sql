{#-
    Daily, weekly (ISO, Monday) and monthly error counts, rolled up from the hourly mart (which
    is dense), in the same long format: one row per (grain, period, dimension, dimension_value).
    See mart_error_trends_periodic.yml.
-#}

with

hourly as (

    select * from {{ ref('mart_error_trends_hourly') }}

),

bucketed as (

    {%- for unit in ['day', 'week', 'month'] %}
    select
        '{{ unit }}' as grain,
        {{ ops_trend_trunc_utc(unit, 'hour_start') }} as period_start,
        hour_start,
        dimension,
        dimension_value,
        n_errors,
        n_operations
    from hourly
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

period_totals as (

    {#- operations and spine hours of a period come from the total series (dense over the spine) -#}
    select
        grain,
        period_start,
        cast(count(*) as bigint) as n_hours,
        cast(sum(n_operations) as bigint) as n_operations
    from bucketed
    where dimension = 'total'
    group by grain, period_start

),

grain_start as (

    select grain, min(period_start) as first_period_start
    from period_totals
    group by grain

),

aggregated as (

    select
        grain,
        period_start,
        dimension,
        dimension_value,
        cast(sum(n_errors) as bigint) as n_errors
    from bucketed
    group by grain, period_start, dimension, dimension_value

),

lagged as (

    select
        aggregated.*,
        lag(n_errors) over (
            partition by grain, dimension, dimension_value
            order by period_start
        ) as prev_row_errors,
        lag(period_start) over (
            partition by grain, dimension, dimension_value
            order by period_start
        ) as prev_row_start,
        case grain
            {%- for unit in ['day', 'week', 'month'] %}
            when '{{ unit }}' then {{ ops_trend_trunc_utc(unit, timestamp_add('period_start', -1, 'hour')) }}
            {%- endfor %}
        end as prev_period_start
    from aggregated

),

compared as (

    {#- the previous period's count: the previous row of the series when it is that period,
        0 when the series has no row for it, NULL for the first period of the data -#}
    select
        lagged.*,
        case
            when lagged.period_start <= grain_start.first_period_start then null
            when lagged.prev_row_start = lagged.prev_period_start then lagged.prev_row_errors
            else 0
        end as n_errors_prev_period
    from lagged
    inner join grain_start
        on lagged.grain = grain_start.grain

),

final as (

    select
        lagged.grain,
        lagged.period_start,
        lagged.dimension,
        lagged.dimension_value,
        period_totals.n_hours,
        lagged.n_errors,
        period_totals.n_operations,
        {{ ops_trend_ratio('lagged.n_errors', 'period_totals.n_operations') }} as error_rate,
        lagged.n_errors_prev_period,
        lagged.n_errors - lagged.n_errors_prev_period as change_vs_prev_period,
        {{ ops_trend_percent('lagged.n_errors - lagged.n_errors_prev_period', 'lagged.n_errors_prev_period') }}
            as pct_change_vs_prev_period,
        {#- the period holding as_of is not over yet (a period can only start before as_of) -#}
        case lagged.grain
            {%- for unit in ['day', 'week', 'month'] %}
            when '{{ unit }}' then lagged.period_start >= {{ ops_trend_trunc_utc(unit, as_of_timestamp()) }}
            {%- endfor %}
        end as is_partial
    from compared as lagged
    inner join period_totals
        on lagged.grain = period_totals.grain
        and lagged.period_start = period_totals.period_start

)

select * from final
