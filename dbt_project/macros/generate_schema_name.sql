{#-
    Models with a custom schema (+schema: staging / intermediate / marts) land in exactly that
    schema, not in `<target schema>_<custom>` as dbt does by default; models without one land
    in the target schema (`analytics`). Same on both targets.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
