{#- String helpers whose SQL differs between DuckDB (RE2 regexes) and PostgreSQL (POSIX regexes).
    Keep patterns to the common subset: anchors, classes, groups, {m,n}, no backreferences. -#}

{# True when expr contains a match of pattern (anchor it for a full match). #}
{% macro regex_matches(expr, pattern) -%}
    {{ return(adapter.dispatch('regex_matches', 'ops_warehouse')(expr, pattern)) }}
{%- endmacro %}

{% macro default__regex_matches(expr, pattern) -%}
    ({{ expr }} ~ '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__regex_matches(expr, pattern) -%}
    regexp_matches({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regex_matches(expr, pattern) -%}
    ({{ expr }} ~ '{{ pattern }}')
{%- endmacro %}


{#
    The part of expr before `suffix` when expr ends with it (and has something before it), else
    NULL. Plain left/right/length: ~15x cheaper than a regex capture on PostgreSQL.
#}
{% macro strip_suffix(expr, suffix) -%}
    {%- if "'" in suffix -%}
        {{ exceptions.raise_compiler_error("strip_suffix: quote in suffix " ~ suffix) }}
    {%- endif -%}
    case
        when length({{ expr }}) > {{ suffix | length }}
         and right({{ expr }}, {{ suffix | length }}) = '{{ suffix }}'
        then left({{ expr }}, length({{ expr }}) - {{ suffix | length }})
    end
{%- endmacro %}


{# A text expression as bigint when it is a plain integer, else NULL (never an error). #}
{% macro safe_cast_bigint(expr) -%}
    {{ return(adapter.dispatch('safe_cast_bigint', 'ops_warehouse')(expr)) }}
{%- endmacro %}

{% macro default__safe_cast_bigint(expr) -%}
    case when {{ regex_matches('trim(' ~ expr ~ ')', '^-?[0-9]{1,18}$') }}
         then cast(trim({{ expr }}) as bigint) end
{%- endmacro %}

{% macro duckdb__safe_cast_bigint(expr) -%}
    case when regexp_full_match(trim({{ expr }}), '-?[0-9]{1,18}')
         then try_cast(trim({{ expr }}) as bigint) end
{%- endmacro %}


{# md5 of the columns' text, '|'-separated, NULL as ''; same value on both targets. #}
{% macro surrogate_key(columns) -%}
    {{ return(adapter.dispatch('surrogate_key', 'ops_warehouse')(columns)) }}
{%- endmacro %}

{% macro default__surrogate_key(columns) -%}
    md5(
    {%- for col in columns %}
        coalesce(cast({{ col }} as {{ dbt.type_string() }}), '')
        {%- if not loop.last %} || '|' || {% endif -%}
    {%- endfor %}
    )
{%- endmacro %}


{# Trimmed text, empty string as NULL. #}
{% macro clean_text(expr) -%}
    nullif(trim({{ expr }}), '')
{%- endmacro %}
