{#-
    Correlation matrix between error families, long format: one row per ordered pair, over the
    hourly series of int_corr_family_hour_diffs (the last var('corr_window_days') days). The
    measures are those of the macro ops_corr_matrix (macros/correlation.sql); on top of them:

    - synonyms: pairs that are the same failure logged twice are flagged, by either of two tests:
      hourly (NPMI ≥ corr_synonym_min_npmi and lag-0 r of the hourly changes ≥ corr_synonym_min_r:
      same hours, same counts) or event-level (int_error_family_co_logging: at least
      corr_synonym_min_co_logged_share of each family's events have a partner of the other on the
      same decision or job within corr_synonym_max_gap_seconds). Every family is folded onto its
      synonym group's representative (most active hours, then name), so a pair repeated through
      a synonym (X → post_failure beside X → post_failed) is marked as a duplicate instead of
      taking a second rank;
    - significance of the best lag (macro ops_corr_significance, shared with
      mart_template_correlation): Fisher z of best_lag_r with n = the hourly points at that lag
      deflated for the series' lag-1 autocorrelation (Bartlett), one-sided p, Bonferroni over the
      2·max_lag + 1 lags searched, Benjamini–Hochberg q across the unordered non-synonym pairs;
      a_leads_b only when q < corr_alpha and the lag is positive;
    - wider families: a family that logs (nearly) every event of another one besides its own
      (posting_attempt_failed holds each post_failed: ≥ corr_synonym_min_co_logged_share of the
      narrower family's events co-logged, but not the other way round) repeats the narrower
      family's leads. A lead X → wider (or wider → X) is flagged is_via_wider_family when
      X → narrower (narrower → X) leads at least as strongly: it is the same finding again;
    - cause_rank: the leading pairs (a_leads_b) that are neither synonyms nor duplicates (through
      a synonym or a wider family), by best_lag_r (no ties).
-#}

{%- set min_npmi = var('corr_synonym_min_npmi', 0.98) %}
{%- set min_r = var('corr_synonym_min_r', 0.98) %}
{%- set min_share = var('corr_synonym_min_co_logged_share', 0.9) %}
{%- set max_gap_seconds = var('corr_synonym_max_gap_seconds', 5) %}
{#- the co-logged shares as whole percentages in text (half up: the same on both targets) -#}
{%- set percent_a = 'cast(cast(floor(flagged.co_logged_share_a * 100 + 0.5) as bigint) as ' ~ dbt.type_string() ~ ')' %}
{%- set percent_b = 'cast(cast(floor(flagged.co_logged_share_b * 100 + 0.5) as bigint) as ' ~ dbt.type_string() ~ ')' %}

with

matrix as (

    {{ ops_corr_matrix(ref('int_corr_family_hour_diffs'), key_column='error_family') }}

),

co_logging as (

    select * from {{ ref('int_error_family_co_logging') }}

),

flagged as (

    select
        matrix.*,
        coalesce(co_logging.co_logged_share_a, 0.0) as co_logged_share_a,
        coalesce(co_logging.co_logged_share_b, 0.0) as co_logged_share_b,
        coalesce(matrix.npmi >= {{ min_npmi }} and matrix.pearson_diff_r >= {{ min_r }}, false) as is_hourly_synonym,
        -- both families' events mostly come in pairs: one failure, two writers
        coalesce(
            co_logging.co_logged_share_a >= {{ min_share }} and co_logging.co_logged_share_b >= {{ min_share }},
            false
        ) as is_co_logged_synonym
    from matrix
    left join co_logging
        on co_logging.family_a = matrix.series_a
       and co_logging.family_b = matrix.series_b

),

synonym_tested as (

    select
        flagged.*,
        is_hourly_synonym or is_co_logged_synonym as is_synonym_pair
    from flagged

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
            from synonym_tested
            union
            select series_a as family, series_b as partner, n_hours_b as partner_hours
            from synonym_tested
            where is_synonym_pair
        ) candidates
    ) ranked
    where pick = 1

),

-- Fisher z with the autocorrelation-deflated n, Bonferroni over the lags, Benjamini–Hochberg
-- across the unordered pairs that are not synonyms (macros/correlation.sql)
significance as (

    {{ ops_corr_significance('synonym_tested', ref('int_corr_family_hour_diffs'),
                             key_column='error_family', fdr_exclude_column='is_synonym_pair') }}

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
        {{ ops_corr_a_leads_b('flagged.best_lag_hours', 'flagged.best_lag_r', 'significance.q_value') }}
            and not flagged.is_synonym_pair as a_leads_b,
        flagged.is_synonym_pair,
        case
            when flagged.is_hourly_synonym and flagged.is_co_logged_synonym then 'hourly_and_co_logged'
            when flagged.is_hourly_synonym then 'hourly'
            when flagged.is_co_logged_synonym then 'co_logged'
        end as synonym_test,
        case when flagged.is_synonym_pair then
            'same failure logged twice: '
            || case when flagged.is_co_logged_synonym then
                   'co-logged (same decision or job within {{ max_gap_seconds }} s) for '
                   || {{ percent_a }} || '% of ' || flagged.series_a || ' and '
                   || {{ percent_b }} || '% of ' || flagged.series_b
               else '' end
            || case when flagged.is_co_logged_synonym and flagged.is_hourly_synonym then '; ' else '' end
            || case when flagged.is_hourly_synonym then
                   'NPMI >= {{ min_npmi }} and lag-0 r of the hourly changes >= {{ min_r }}'
               else '' end
        end as synonym_reason,
        flagged.co_logged_share_a,
        flagged.co_logged_share_b,
        fold_a.representative as family_a_folded,
        fold_b.representative as family_b_folded,
        not flagged.is_synonym_pair
            and (fold_a.representative <> flagged.series_a or fold_b.representative <> flagged.series_b)
            as is_folded_duplicate,
        flagged.corr_rank
    from synonym_tested as flagged
    inner join folded_family as fold_a on fold_a.family = flagged.series_a
    inner join folded_family as fold_b on fold_b.family = flagged.series_b
    left join significance
        on significance.series_a = least(flagged.series_a, flagged.series_b)
       and significance.series_b = greatest(flagged.series_a, flagged.series_b)

),

-- (narrower, wider): the narrower family's events are nearly all logged with the wider one's
wider_family as (

    select series_a as narrower_family, series_b as wider_family
    from synonym_tested
    where co_logged_share_a >= {{ min_share }}
      and not is_synonym_pair

),

-- a lead through a wider family (on either side) that the same lead through its narrower
-- family explains at least as well
via_wider as (

    select pair.family_a, pair.family_b, min(wider_family.narrower_family) as narrower_family
    from measured as pair
    inner join wider_family
        on wider_family.wider_family in (pair.family_a, pair.family_b)
    inner join measured as narrower
        on narrower.family_a = case when wider_family.wider_family = pair.family_a
                                    then wider_family.narrower_family else pair.family_a end
       and narrower.family_b = case when wider_family.wider_family = pair.family_b
                                    then wider_family.narrower_family else pair.family_b end
    where pair.a_leads_b and narrower.a_leads_b and narrower.best_lag_r >= pair.best_lag_r
    group by pair.family_a, pair.family_b

),

with_wider as (

    select
        measured.*,
        via_wider.narrower_family is not null as is_via_wider_family,
        via_wider.narrower_family as via_narrower_family
    from measured
    left join via_wider
        on via_wider.family_a = measured.family_a
       and via_wider.family_b = measured.family_b

),

final as (

    select
        with_wider.*,
        case when a_leads_b then
            rank() over (partition by a_leads_b order by best_lag_r desc)
        end as lead_rank,
        case when a_leads_b and not is_folded_duplicate and not is_via_wider_family then
            row_number() over (
                partition by a_leads_b and not is_folded_duplicate and not is_via_wider_family
                order by best_lag_r desc, q_value, family_a, family_b
            )
        end as cause_rank
    from with_wider

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
    synonym_test,
    synonym_reason,
    co_logged_share_a,
    co_logged_share_b,
    family_a_folded,
    family_b_folded,
    is_folded_duplicate,
    is_via_wider_family,
    via_narrower_family,
    corr_rank,
    lead_rank,
    cause_rank
from final
