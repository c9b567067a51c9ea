{#-
    Correlation matrix between error families, long format: one row per ordered pair, over the
    hourly series of int_corr_family_hour_diffs (the last var('corr_window_days') days). The
    measures are those of the macro ops_corr_matrix (macros/correlation.sql).
-#}

with

matrix as (

    {{ ops_corr_matrix(ref('int_corr_family_hour_diffs'), key_column='error_family') }}

),

final as (

    select
        series_a as family_a,
        series_b as family_b,
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
        a_leads_b,
        corr_rank,
        lead_rank
    from matrix

)

select * from final
