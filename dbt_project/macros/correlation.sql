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
    Whether A leads B is not decided here: that needs the significance test of
    ops_corr_significance (below). Used by mart_error_correlation (error families) and
    mart_template_correlation (templates).
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

    {#- every pair of series, with the hours both are active in (joined on active hours only) -#}
    select
        a.series_key as series_a,
        b.series_key as series_b,
        coalesce(both_active.n_hours_both, 0) as n_hours_both
    from series_hours as a
    inner join series_hours as b
        on a.series_key < b.series_key
    left join (
        select
            a.series_key as series_a,
            b.series_key as series_b,
            count(*) as n_hours_both
        from series as a
        inner join series as b
            on a.hour_index = b.hour_index
           and a.series_key < b.series_key
        where a.n_events > 0
          and b.n_events > 0
        group by a.series_key, b.series_key
    ) as both_active
        on both_active.series_a = a.series_key
       and both_active.series_b = b.series_key

),

{#- Pearson sums per pair and lag without the dense pairs × hours × lags join. The series share
    one dense spine (hour_index 0 .. last, diff_events NULL only at 0), so for lag L the points
    are a's hours t in [lo, hi] = [max(1, 1 − L), min(last, last − L)] against b's t + L:
    n = hi − lo + 1; Σx, Σy telescope to n_events[end] − n_events[start − 1]; Σx², Σy² come
    from a running sum of squares; only Σxy needs both series, and only their non-zero
    differences contribute to it. Exact (integer sums), like the join it replaces. -#}
lag_ranges as (

    select
        lags.lag_hours,
        case when lags.lag_hours > 0 then 1 else 1 - lags.lag_hours end as lo,
        case when lags.lag_hours > 0 then spine_end.last_index - lags.lag_hours else spine_end.last_index end as hi
    from lags
    cross join (select max(hour_index) as last_index from series) as spine_end

),

range_bounds as (

    {#- side a reads hours [lo, hi], side b [lo + L, hi + L]; a range's sums are the running
        values at its end minus those just before its start -#}
    select lag_hours, 'a' as side, lo - 1 as before_index, hi as end_index
    from lag_ranges
    where hi >= lo

    union all

    select lag_hours, 'b', lo + lag_hours - 1, hi + lag_hours
    from lag_ranges
    where hi >= lo

),

running as (

    select
        series_key,
        hour_index,
        n_events,
        sum(coalesce(diff_events, 0) * coalesce(diff_events, 0)) over (
            partition by series_key
            order by hour_index
            rows between unbounded preceding and current row
        ) as running_sq
    from series

),

range_sums as (

    select
        at_end.series_key,
        range_bounds.lag_hours,
        range_bounds.side,
        at_end.n_events - before_start.n_events as sum_diff,
        at_end.running_sq - before_start.running_sq as sum_sq
    from range_bounds
    inner join running as at_end
        on at_end.hour_index = range_bounds.end_index
    inner join running as before_start
        on before_start.series_key = at_end.series_key
       and before_start.hour_index = range_bounds.before_index

),

nonzero_diffs as (

    select series_key, hour_index, diff_events
    from series
    where diff_events <> 0

),

cross_products as (

    select
        a.series_key as series_a,
        b.series_key as series_b,
        lags.lag_hours,
        sum(a.diff_events * b.diff_events) as sxy
    from nonzero_diffs as a
    cross join lags
    inner join nonzero_diffs as b
        on b.hour_index = a.hour_index + lags.lag_hours
       and a.series_key < b.series_key
    group by a.series_key, b.series_key, lags.lag_hours

),

lagged_sums as (

    select
        sums_a.series_key as series_a,
        sums_b.series_key as series_b,
        lag_ranges.lag_hours,
        lag_ranges.hi - lag_ranges.lo + 1 as n,
        sums_a.sum_diff as sx,
        sums_b.sum_diff as sy,
        coalesce(cross_products.sxy, 0) as sxy,
        sums_a.sum_sq as sxx,
        sums_b.sum_sq as syy
    from lag_ranges
    inner join range_sums as sums_a
        on sums_a.lag_hours = lag_ranges.lag_hours
       and sums_a.side = 'a'
    inner join range_sums as sums_b
        on sums_b.lag_hours = lag_ranges.lag_hours
       and sums_b.side = 'b'
       and sums_a.series_key < sums_b.series_key
    left join cross_products
        on cross_products.series_a = sums_a.series_key
       and cross_products.series_b = sums_b.series_key
       and cross_products.lag_hours = lag_ranges.lag_hours

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
        -- points of the lagged series: first differences start at the spine's second hour
        case when ordered.best_lag_hours is not null
            then spine_size.n_hours - 1 - abs(ordered.best_lag_hours)
        end as n_lag_points
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
        end as corr_rank
    from measured

)

select * from final

{%- endmacro %}


{#-
    Significance of the best lag of each unordered pair of a correlation matrix: one row per pair
    (series_a < series_b) with a defined best_lag_r — series_a, series_b, n_effective, fisher_z,
    p_value, q_value. Shared by mart_error_correlation and mart_template_correlation.

    pairs: a relation or CTE with the columns of ops_corr_matrix (series_a, series_b, best_lag_r,
    n_lag_points); series_relation / key_column: the hourly series the matrix was computed from
    (for the autocorrelation); fdr_exclude_column: a boolean column of `pairs` whose true rows
    get a p but stay out of the Benjamini–Hochberg family (q NULL), e.g. synonym pairs.

    - n_effective: n_lag_points / max(1, 1 + 2·ρA(1)·ρB(1)) — Bartlett: autocorrelated series
      make r vary more than 1/n (the lag-1 autocorrelation of first differences is about −0.5);
    - fisher_z = atanh(best_lag_r)·√(n_effective − 3); untested when n_effective ≤ 3;
    - p_value: one-sided normal tail × (2·corr_max_lag_hours + 1), Bonferroni for the lags searched;
    - q_value: Benjamini–Hochberg across the tested pairs (not excluded).
-#}
{% macro ops_corr_significance(pairs, series_relation, key_column='series_key', fdr_exclude_column=none) -%}

{%- set max_lag = var('corr_max_lag_hours', 6) | int %}

with

series_diffs as (

    select {{ key_column }} as series_key, hour_index, diff_events
    from {{ series_relation }}
    where diff_events is not null

),

autocorrelation as (

    select
        a.series_key,
        {{ ops_an_pearson('count(*)', 'sum(a.diff_events)', 'sum(b.diff_events)',
                          'sum(a.diff_events * b.diff_events)', 'sum(a.diff_events * a.diff_events)',
                          'sum(b.diff_events * b.diff_events)') }} as lag1_r
    from series_diffs as a
    inner join series_diffs as b
        on b.series_key = a.series_key
       and b.hour_index = a.hour_index + 1
    group by a.series_key

),

effective as (

    select
        pairs.series_a,
        pairs.series_b,
        pairs.best_lag_r,
        {% if fdr_exclude_column %}coalesce(pairs.{{ fdr_exclude_column }}, false){% else %}false{% endif %} as is_fdr_excluded,
        cast(pairs.n_lag_points as double precision)
            / greatest(1.0, 1.0 + 2.0 * coalesce(ac_a.lag1_r, 0.0) * coalesce(ac_b.lag1_r, 0.0))
            as n_effective
    from {{ pairs }} as pairs
    left join autocorrelation as ac_a on ac_a.series_key = pairs.series_a
    left join autocorrelation as ac_b on ac_b.series_key = pairs.series_b
    where pairs.series_a < pairs.series_b
      and pairs.best_lag_r is not null

),

tested as (

    select
        series_a,
        series_b,
        is_fdr_excluded,
        n_effective,
        {{ ops_an_fisher_z('best_lag_r') }} * sqrt(n_effective - 3.0) as fisher_z
    from effective
    where n_effective > 3

),

p_values as (

    select
        series_a,
        series_b,
        is_fdr_excluded,
        n_effective,
        fisher_z,
        least(1.0, {{ 2 * max_lag + 1 }} * {{ ops_an_normal_upper_tail('fisher_z') }}) as p_value
    from tested

),

bh_ranked as (

    select
        series_a,
        series_b,
        p_value,
        count(*) over () as n_tests,
        row_number() over (order by p_value, series_a, series_b) as p_rank
    from p_values
    where not is_fdr_excluded

),

q_values as (

    select
        series_a,
        series_b,
        least(1.0, min(p_value * n_tests / p_rank) over (
            order by p_rank desc rows between unbounded preceding and current row
        )) as q_value
    from bh_ranked

)

select
    p_values.series_a,
    p_values.series_b,
    p_values.n_effective,
    p_values.fisher_z,
    p_values.p_value,
    q_values.q_value
from p_values
left join q_values
    on q_values.series_a = p_values.series_a
   and q_values.series_b = p_values.series_b

{%- endmacro %}


{#- A's changes are followed by B's, significantly: a positive best lag with a positive r and a
    Benjamini–Hochberg q below var('corr_alpha', 0.05) (false when q is NULL). -#}
{% macro ops_corr_a_leads_b(best_lag_hours, best_lag_r, q_value) -%}
    coalesce(
        {{ best_lag_hours }} > 0
        and {{ best_lag_r }} > 0
        and {{ q_value }} < {{ var('corr_alpha', 0.05) }},
        false
    )
{%- endmacro %}
