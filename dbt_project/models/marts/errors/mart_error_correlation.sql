{#-
    Correlation matrix between error families, long format: one row per ordered pair.
    Co-occurrence (same hour): support, lift, NPMI. Co-movement: Pearson r of the hourly first
    differences at lag 0 and at every lag in −max_lag…+max_lag hours, where lag k correlates
    A(t) with B(t + k): k > 0 means A leads B by k hours. The correlations are computed once per
    unordered pair (family_a < family_b) and mirrored (B→A at lag −k has the same r).
-#}

{%- set max_lag = var('corr_max_lag_hours', 6) | int %}

with

series as (

    select * from {{ ref('int_corr_family_hour_diffs') }}

),

lags as (

    {{ ops_an_int_range(-max_lag, max_lag, 'lag_hours') }}

),

spine_size as (

    select count(distinct hour_index) as n_hours
    from series

),

family_hours as (

    select
        event_family,
        count(case when n_events > 0 then 1 end) as n_hours_active
    from series
    group by event_family

),

co_occurrence as (

    select
        a.event_family as family_a,
        b.event_family as family_b,
        count(case when a.n_events > 0 and b.n_events > 0 then 1 end) as n_hours_both
    from series as a
    inner join series as b
        on a.hour_index = b.hour_index
       and a.event_family < b.event_family
    group by a.event_family, b.event_family

),

lagged_sums as (

    select
        a.event_family as family_a,
        b.event_family as family_b,
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
       and a.event_family < b.event_family
    where a.diff_events is not null
      and b.diff_events is not null
    group by a.event_family, b.event_family, lags.lag_hours

),

lagged_r as (

    select
        family_a,
        family_b,
        lag_hours,
        {{ ops_an_pearson('n', 'sx', 'sy', 'sxy', 'sxx', 'syy') }} as r
    from lagged_sums

),

best_lag as (

    select family_a, family_b, lag_hours, r
    from (
        select
            family_a,
            family_b,
            lag_hours,
            r,
            row_number() over (
                partition by family_a, family_b
                order by r desc, abs(lag_hours), lag_hours
            ) as lag_rank
        from lagged_r
        where r is not null
    ) ranked
    where lag_rank = 1

),

unordered as (

    select
        co_occurrence.family_a,
        co_occurrence.family_b,
        co_occurrence.n_hours_both,
        lag0.r as pearson_diff_r,
        best_lag.lag_hours as best_lag_hours,
        best_lag.r as best_lag_r
    from co_occurrence
    left join lagged_r as lag0
        on lag0.family_a = co_occurrence.family_a
       and lag0.family_b = co_occurrence.family_b
       and lag0.lag_hours = 0
    left join best_lag
        on best_lag.family_a = co_occurrence.family_a
       and best_lag.family_b = co_occurrence.family_b

),

ordered as (

    select family_a, family_b, n_hours_both, pearson_diff_r, best_lag_hours, best_lag_r
    from unordered

    union all

    select family_b, family_a, n_hours_both, pearson_diff_r, -best_lag_hours, best_lag_r
    from unordered

),

measured as (

    select
        ordered.family_a,
        ordered.family_b,
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
    inner join family_hours as fa on fa.event_family = ordered.family_a
    inner join family_hours as fb on fb.event_family = ordered.family_b

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
