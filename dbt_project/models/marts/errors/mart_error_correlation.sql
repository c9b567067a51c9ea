{#-
    Correlation matrix between error families, long format: one row per ordered pair, over the
    hourly series of int_corr_family_hour_diffs (the last var('corr_window_days') days). The
    measures are those of the macro ops_corr_matrix (macros/correlation.sql); on top of them:

    - synonyms: pairs that are the same failure logged twice (NPMI ≥ corr_synonym_min_npmi and
      lag-0 r of the hourly changes ≥ corr_synonym_min_r: same hours, same counts) are flagged,
      and every family is folded onto its synonym group's representative (most active hours, then
      name), so a pair repeated through a synonym (X → post_failure beside X → post_failed) is
      marked as a duplicate instead of taking a second rank;
    - significance of the best lag: Fisher z of best_lag_r with n = the hourly points at that lag
      deflated for the series' lag-1 autocorrelation (Bartlett), one-sided p, Bonferroni over the 2·max_lag + 1 lags searched, Benjamini–Hochberg q across
      the unordered non-synonym pairs; a_leads_b only when q < corr_alpha and the lag is positive;
    - cause_rank: the leading pairs (a_leads_b) that are neither synonyms nor duplicates, by
      best_lag_r (no ties).
-#}

{%- set max_lag = var('corr_max_lag_hours', 6) | int %}
{%- set min_npmi = var('corr_synonym_min_npmi', 0.98) %}
{%- set min_r = var('corr_synonym_min_r', 0.98) %}
{%- set alpha = var('corr_alpha', 0.05) %}

with

matrix as (

    {{ ops_corr_matrix(ref('int_corr_family_hour_diffs'), key_column='error_family') }}

),

flagged as (

    select
        matrix.*,
        coalesce(npmi >= {{ min_npmi }} and pearson_diff_r >= {{ min_r }}, false) as is_synonym_pair,
        -- points of the lagged series: first differences start at the spine's second hour
        case when best_lag_hours is not null then n_hours - 1 - abs(best_lag_hours) end as n_lag_points
    from matrix

),

-- each family's representative: itself or a synonym partner, the most active first, then by name
folded_family as (

    select family, representative
    from (
        select
            candidates.family,
            candidates.partner as representative,
            row_number() over (
                partition by candidates.family
                order by candidates.partner_hours desc, candidates.partner
            ) as pick
        from (
            select series_a as family, series_a as partner, n_hours_a as partner_hours
            from flagged
            union
            select series_a as family, series_b as partner, n_hours_b as partner_hours
            from flagged
            where is_synonym_pair
        ) candidates
    ) ranked
    where pick = 1

),

-- lag-1 autocorrelation of each family's hourly changes (differencing makes it about −0.5)
autocorrelation as (

    select
        a.error_family,
        {{ ops_an_pearson('count(*)', 'sum(a.diff_events)', 'sum(b.diff_events)',
                          'sum(a.diff_events * b.diff_events)', 'sum(a.diff_events * a.diff_events)',
                          'sum(b.diff_events * b.diff_events)') }} as lag1_r
    from {{ ref('int_corr_family_hour_diffs') }} as a
    inner join {{ ref('int_corr_family_hour_diffs') }} as b
        on b.error_family = a.error_family
       and b.hour_index = a.hour_index + 1
    where a.diff_events is not null
      and b.diff_events is not null
    group by a.error_family

),

-- Bartlett: autocorrelated series make r vary more than 1/n; n_effective = n / (1 + 2·ρa(1)·ρb(1)),
-- never above n
effective as (

    select
        flagged.series_a,
        flagged.series_b,
        flagged.best_lag_r,
        cast(flagged.n_lag_points as double precision)
            / greatest(1.0, 1.0 + 2.0 * coalesce(ac_a.lag1_r, 0.0) * coalesce(ac_b.lag1_r, 0.0))
            as n_effective
    from flagged
    left join autocorrelation as ac_a on ac_a.error_family = flagged.series_a
    left join autocorrelation as ac_b on ac_b.error_family = flagged.series_b
    where flagged.series_a < flagged.series_b
      and flagged.best_lag_r is not null

),

tested as (

    select
        series_a,
        series_b,
        n_effective,
        {{ ops_an_fisher_z('best_lag_r') }} * sqrt(n_effective - 3.0) as fisher_z
    from effective
    where n_effective > 3

),

p_values as (

    select
        series_a,
        series_b,
        n_effective,
        fisher_z,
        least(1.0, {{ 2 * max_lag + 1 }} * {{ ops_an_normal_upper_tail('fisher_z') }}) as p_value
    from tested

),

-- Benjamini–Hochberg over the unordered pairs that are not synonyms
bh_ranked as (

    select
        p_values.series_a,
        p_values.series_b,
        p_values.p_value,
        count(*) over () as n_tests,
        row_number() over (order by p_values.p_value, p_values.series_a, p_values.series_b) as p_rank
    from p_values
    inner join flagged
        on flagged.series_a = p_values.series_a
       and flagged.series_b = p_values.series_b
    where not flagged.is_synonym_pair

),

q_values as (

    select
        series_a,
        series_b,
        least(1.0, min(p_value * n_tests / p_rank) over (
            order by p_rank desc rows between unbounded preceding and current row
        )) as q_value
    from bh_ranked

),

significance as (

    select p_values.series_a, p_values.series_b, p_values.n_effective, p_values.fisher_z, p_values.p_value, q_values.q_value
    from p_values
    left join q_values
        on q_values.series_a = p_values.series_a
       and q_values.series_b = p_values.series_b

),

measured as (

    select
        flagged.series_a as family_a,
        flagged.series_b as family_b,
        flagged.n_hours,
        flagged.n_hours_a,
        flagged.n_hours_b,
        flagged.n_hours_both,
        flagged.support,
        flagged.lift,
        flagged.npmi,
        flagged.pearson_diff_r,
        flagged.best_lag_hours,
        flagged.best_lag_r,
        flagged.n_lag_points,
        significance.n_effective,
        significance.fisher_z,
        significance.p_value,
        significance.q_value,
        coalesce(
            flagged.best_lag_hours > 0
            and flagged.best_lag_r > 0
            and significance.q_value < {{ alpha }}
            and not flagged.is_synonym_pair,
            false
        ) as a_leads_b,
        flagged.is_synonym_pair,
        case when flagged.is_synonym_pair
            then 'same failure logged twice: NPMI >= {{ min_npmi }} and lag-0 r of the hourly changes >= {{ min_r }}'
        end as synonym_reason,
        fold_a.representative as family_a_folded,
        fold_b.representative as family_b_folded,
        not flagged.is_synonym_pair
            and (fold_a.representative <> flagged.series_a or fold_b.representative <> flagged.series_b)
            as is_folded_duplicate,
        flagged.corr_rank
    from flagged
    inner join folded_family as fold_a on fold_a.family = flagged.series_a
    inner join folded_family as fold_b on fold_b.family = flagged.series_b
    left join significance
        on significance.series_a = least(flagged.series_a, flagged.series_b)
       and significance.series_b = greatest(flagged.series_a, flagged.series_b)

),

final as (

    select
        measured.*,
        case when a_leads_b then
            rank() over (partition by a_leads_b order by best_lag_r desc)
        end as lead_rank,
        case when a_leads_b and not is_folded_duplicate then
            row_number() over (
                partition by a_leads_b and not is_folded_duplicate
                order by best_lag_r desc, q_value, family_a, family_b
            )
        end as cause_rank
    from measured

)

select
    family_a,
    family_b,
    n_hours,
    n_hours_a,
    n_hours_b,
    n_hours_both,
    support,
    lift,
    npmi,
    pearson_diff_r,
    best_lag_hours,
    best_lag_r,
    n_lag_points,
    n_effective,
    fisher_z,
    p_value,
    q_value,
    a_leads_b,
    is_synonym_pair,
    synonym_reason,
    family_a_folded,
    family_b_folded,
    is_folded_duplicate,
    corr_rank,
    lead_rank,
    cause_rank
from final
