{#
    Data tests on the event-sized relations check the recent rows only, so the hourly build's
    tests cost what the new hours cost, not the whole history: a generic test on a relation
    named in var('test_recent_columns') reads the rows whose time column is within
    var('test_recent_days') days before as_of. The window is off (every row is tested) on
    --full-refresh, or with --vars '{test_recent_days: null}'. An explicit `where` config is
    kept and combined. Overrides dbt's get_where_subquery (dispatched from the root project first).
#}
{% macro ops_test_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set recent_days = var('test_recent_days', none) -%}
    {%- set column = var('test_recent_columns', {}).get(relation.identifier) -%}
    {%- set conditions = [] -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if column and recent_days is not none and not flags.FULL_REFRESH -%}
        {%- do conditions.append(column ~ ' >= ' ~ timestamp_add(as_of_timestamp(), -24 * (recent_days | int), 'hour')) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{% macro default__get_where_subquery(relation) -%}
    {%- do return(ops_test_where_subquery(relation)) -%}
{%- endmacro %}

{% macro duckdb__get_where_subquery(relation) -%}
    {%- do return(ops_test_where_subquery(relation)) -%}
{%- endmacro %}

{% macro postgres__get_where_subquery(relation) -%}
    {%- do return(ops_test_where_subquery(relation)) -%}
{%- endmacro %}
