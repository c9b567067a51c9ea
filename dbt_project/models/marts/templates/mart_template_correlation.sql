{#-
    The correlation matrix between error templates, long format: one row per ordered pair of
    templates active in at least var('corr_min_active_hours', 5) hours of the
    var('corr_window_days', 30) days ending at as_of's hour. The measures come from
    ops_corr_matrix and the significance of the best lag from ops_corr_significance, the same
    as mart_error_correlation's for families (Fisher z with the autocorrelation-deflated n,
    Bonferroni over the lags, Benjamini–Hochberg across the pairs); a_leads_b only when
    q < corr_alpha. The template texts are joined for reading. See mart_template_correlation.yml.
-#}

with

matrix as (

    {{ ops_corr_matrix(ref('int_template_hour_series')) }}

),

significance as (

    {{ ops_corr_significance('matrix', ref('int_template_hour_series')) }}

),

templates as (

    select * from {{ source('templates', 'mart_error_templates') }}

),

tested as (

    select
        matrix.*,
        significance.n_effective,
        significance.fisher_z,
        significance.p_value,
        significance.q_value,
        {{ ops_corr_a_leads_b('matrix.best_lag_hours', 'matrix.best_lag_r', 'significance.q_value') }} as a_leads_b
    from matrix
    left join significance
        on significance.series_a = least(matrix.series_a, matrix.series_b)
       and significance.series_b = greatest(matrix.series_a, matrix.series_b)

),

final as (

    select
        tested.series_a,
        tested.series_b,
        template_a.template as template_a,
        template_b.template as template_b,
        tested.n_hours,
        tested.n_hours_a,
        tested.n_hours_b,
        tested.n_hours_both,
        tested.support,
        tested.lift,
        tested.npmi,
        tested.pearson_diff_r,
        tested.best_lag_hours,
        tested.best_lag_r,
        tested.n_lag_points,
        tested.n_effective,
        tested.fisher_z,
        tested.p_value,
        tested.q_value,
        tested.a_leads_b,
        tested.corr_rank,
        case when tested.a_leads_b then
            rank() over (partition by tested.a_leads_b order by tested.best_lag_r desc)
        end as lead_rank,
        template_a.example_message as example_message_a,
        template_b.example_message as example_message_b
    from tested
    left join templates as template_a
        on template_a.template_id = tested.series_a
    left join templates as template_b
        on template_b.template_id = tested.series_b

)

select * from final
