{#-
    The correlation matrix between error templates, long format: one row per ordered pair of
    templates active in at least var('corr_min_active_hours', 5) hours of the
    var('corr_window_days', 30) days ending at as_of's hour. The measures come from
    ops_corr_matrix (the same as mart_error_correlation's for families); the template texts are
    joined for reading. See mart_template_correlation.yml.
-#}

with

matrix as (

    {{ ops_corr_matrix(ref('int_template_hour_series')) }}

),

templates as (

    select * from {{ source('templates', 'mart_error_templates') }}

),

final as (

    select
        matrix.series_a,
        matrix.series_b,
        template_a.template as template_a,
        template_b.template as template_b,
        matrix.n_hours,
        matrix.n_hours_a,
        matrix.n_hours_b,
        matrix.n_hours_both,
        matrix.support,
        matrix.lift,
        matrix.npmi,
        matrix.pearson_diff_r,
        matrix.best_lag_hours,
        matrix.best_lag_r,
        matrix.a_leads_b,
        matrix.corr_rank,
        matrix.lead_rank,
        template_a.example_message as example_message_a,
        template_b.example_message as example_message_b
    from matrix
    left join templates as template_a
        on template_a.template_id = matrix.series_a
    left join templates as template_b
        on template_b.template_id = matrix.series_b

)

select * from final
