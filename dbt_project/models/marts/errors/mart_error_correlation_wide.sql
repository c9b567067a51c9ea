{#-
    The correlation matrix for analysts: the top var('corr_wide_top_n', 10) error families (by
    active hours) × the same families. One column per column family, named r_<family> (the
    family's name in lower case, other characters as _), holding best_lag_r of the row's family
    (A) with that family (B); the diagonal is 1. Synonyms are folded: only a synonym group's
    representative (family_a_folded in mart_error_correlation) is a row and a column. The names are read from mart_error_correlation
    when this model runs (dbt compiles it after its parent is built); where that table does not
    exist yet (dbt compile or docs on an empty warehouse) the columns fall back to vs_01 … vs_NN.
    With fewer families than top_n, there are only as many columns as families.
-#}

{%- set top_n = var('corr_wide_top_n', 10) | int %}
{%- set column_names = [] %}
{%- if execute %}
    {%- set parent = ref('mart_error_correlation') %}
    {%- set existing = adapter.get_relation(database=parent.database, schema=parent.schema, identifier=parent.identifier) %}
    {%- if existing is not none %}
        {%- set found = run_query(
            "select family_a, max(n_hours_a) as n_hours_active from " ~ parent
            ~ " where family_a = family_a_folded group by family_a order by 2 desc, 1 limit " ~ top_n) %}
        {%- for family in found.columns[0].values() %}
            {%- set name = ('r_' ~ modules.re.sub('[^a-z0-9_]+', '_', family | lower))[:55] %}
            {%- if name in column_names %}{% set name = name ~ '_' ~ loop.index %}{% endif %}
            {%- do column_names.append(name) %}
        {%- endfor %}
    {%- endif %}
{%- endif %}

with

pairs as (

    select * from {{ ref('mart_error_correlation') }}

),

families as (

    select family_a as error_family, max(n_hours_a) as n_hours_active
    from pairs
    where family_a = family_a_folded  -- one family per synonym group (its representative)
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
        {%- for k in range(1, (column_names | length if column_names else top_n) + 1) %},
        max(case
            when b.family_rank = {{ k }} and b.error_family = a.error_family then 1.0
            when b.family_rank = {{ k }} then pairs.best_lag_r
        end) as {{ column_names[k - 1] if k <= column_names | length else 'vs_%02d' % k }}
        {%- endfor %}
    from top_families as a
    cross join top_families as b
    left join pairs
        on pairs.family_a = a.error_family
       and pairs.family_b = b.error_family
    group by a.family_rank, a.error_family, a.n_hours_active

)

select * from final
