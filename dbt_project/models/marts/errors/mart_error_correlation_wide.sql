{#-
    The correlation matrix for analysts: the top var('corr_wide_top_n', 10) error families (by
    active hours) × the same families. Columns vs_01 … vs_NN hold best_lag_r of the row's family
    (A) with the family of that rank (B); the diagonal is 1.
-#}

{%- set top_n = var('corr_wide_top_n', 10) | int %}

with

pairs as (

    select * from {{ ref('mart_error_correlation') }}

),

families as (

    select family_a as error_family, max(n_hours_a) as n_hours_active
    from pairs
    group by family_a

),

top_families as (

    select error_family, n_hours_active, family_rank
    from (
        select
            error_family,
            n_hours_active,
            row_number() over (order by n_hours_active desc, error_family) as family_rank
        from families
    ) ranked
    where family_rank <= {{ top_n }}

),

final as (

    select
        a.family_rank,
        a.error_family,
        a.n_hours_active
        {%- for k in range(1, top_n + 1) %},
        max(case
            when b.family_rank = {{ k }} and b.error_family = a.error_family then 1.0
            when b.family_rank = {{ k }} then pairs.best_lag_r
        end) as vs_{{ '%02d' % k }}
        {%- endfor %}
    from top_families as a
    cross join top_families as b
    left join pairs
        on pairs.family_a = a.error_family
       and pairs.family_b = b.error_family
    group by a.family_rank, a.error_family, a.n_hours_active

)

select * from final
