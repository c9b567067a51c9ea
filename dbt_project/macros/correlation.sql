{#-
    The correlation matrix of hourly series, long format: one row per ordered pair of series.
    series_relation: a dense hourly series per key — columns <key_column> (default series_key),
    hour_index (0, 1, …),
    hour_start, n_events (0 where nothing happened), diff_events (n_events − the previous
    hour's; null for the first hour).

    Co-occurrence (same hour): support, lift, NPMI. Co-movement: Pearson r of the hourly first
    differences at lag 0 and at every lag in −max_lag…+max_lag hours, where lag k correlates
    A(t) with B(t + k): k > 0 means A leads B by k hours. The correlations are computed once per
    unordered pair (series_a < series_b) and mirrored (B→A at lag −k has the same r).
    Used by mart_error_correlation (error families) and mart_template_correlation (templates).
-#}
{% macro ops_corr_matrix(series_relation, key_column='series_key') -%}

{%- set max_lag = var('corr_max_lag_hours', 6) | int %}

with

series as (

    select {{ key_column }} as series_key, hour_index, n_events, diff_events
    from {{ series_relation }}

),

lags as (

    {{ ops_an_int_range(-max_lag, max_lag, 'lag_hours') }}

),

spine_size as (

    select count(distinct hour_index) as n_hours
    from series

),

series_hours as (

    select
        series_key,
        count(case when n_events > 0 then 1 end) as n_hours_active
    from series
    group by series_key

),

co_occurrence as (

    select
        a.series_key as series_a,
        b.series_key as series_b,
        count(case when a.n_events > 0 and b.n_events > 0 then 1 end) as n_hours_both
    from series as a
    inner join series as b
        on a.hour_index = b.hour_index
       and a.series_key < b.series_key
    group by a.series_key, b.series_key

),

lagged_sums as (

    select
        a.series_key as series_a,
        b.series_key as series_b,
        lags.lag_hours,
        count(*) as n,
        sum(a.diff_events) as sx,
        sum(b.diff_events) as sy,
        sum(a.diff_events * b.diff_events) as sxy,
        sum(a.diff_events * a.diff_events) as sxx,
        sum(b.diff_events * b.diff_events) as syy
    from series as a
    cross join lags
    inner join series as b
        on b.hour_index = a.hour_index + lags.lag_hours
       and a.series_key < b.series_key
    where a.diff_events is not null
      and b.diff_events is not null
    group by a.series_key, b.series_key, lags.lag_hours

),

lagged_r as (

    select
        series_a,
        series_b,
        lag_hours,
        {{ ops_an_pearson('n', 'sx', 'sy', 'sxy', 'sxx', 'syy') }} as r
    from lagged_sums

),

best_lag as (

    select series_a, series_b, lag_hours, r
    from (
        select
            series_a,
            series_b,
            lag_hours,
            r,
            row_number() over (
                partition by series_a, series_b
                order by r desc, abs(lag_hours), lag_hours
            ) as lag_rank
        from lagged_r
        where r is not null
    ) ranked
    where lag_rank = 1

),

unordered as (

    select
        co_occurrence.series_a,
        co_occurrence.series_b,
        co_occurrence.n_hours_both,
        lag0.r as pearson_diff_r,
        best_lag.lag_hours as best_lag_hours,
        best_lag.r as best_lag_r
    from co_occurrence
    left join lagged_r as lag0
        on lag0.series_a = co_occurrence.series_a
       and lag0.series_b = co_occurrence.series_b
       and lag0.lag_hours = 0
    left join best_lag
        on best_lag.series_a = co_occurrence.series_a
       and best_lag.series_b = co_occurrence.series_b

),

ordered as (

    select series_a, series_b, n_hours_both, pearson_diff_r, best_lag_hours, best_lag_r
    from unordered

    union all

    select series_b, series_a, n_hours_both, pearson_diff_r, -best_lag_hours, best_lag_r
    from unordered

),

measured as (

    select
        ordered.series_a,
        ordered.series_b,
        spine_size.n_hours,
        fa.n_hours_active as n_hours_a,
        fb.n_hours_active as n_hours_b,
        ordered.n_hours_both,
        cast(ordered.n_hours_both as double precision) / cast(spine_size.n_hours as double precision) as support,
        case when fa.n_hours_active > 0 and fb.n_hours_active > 0
            then cast(ordered.n_hours_both * spine_size.n_hours as double precision)
                 / cast(fa.n_hours_active * fb.n_hours_active as double precision)
        end as lift,
        case
            when fa.n_hours_active = 0 or fb.n_hours_active = 0 then null
            when ordered.n_hours_both = 0 then -1.0
            when ordered.n_hours_both = spine_size.n_hours then 1.0
            else ln(
                    cast(ordered.n_hours_both * spine_size.n_hours as double precision)
                    / cast(fa.n_hours_active * fb.n_hours_active as double precision)
                 )
                 / (-ln(cast(ordered.n_hours_both as double precision) / cast(spine_size.n_hours as double precision)))
        end as npmi,
        ordered.pearson_diff_r,
        ordered.best_lag_hours,
        ordered.best_lag_r,
        coalesce(ordered.best_lag_hours > 0, false) as a_leads_b
    from ordered
    cross join spine_size
    inner join series_hours as fa on fa.series_key = ordered.series_a
    inner join series_hours as fb on fb.series_key = ordered.series_b

),

final as (

    select
        measured.*,
        case when best_lag_r is not null then
            rank() over (
                order by case when best_lag_r is null then 1 else 0 end, best_lag_r desc
            )
        end as corr_rank,
        case when a_leads_b then
            rank() over (
                partition by a_leads_b
                order by best_lag_r desc
            )
        end as lead_rank
    from measured

)

select * from final

{%- endmacro %}
