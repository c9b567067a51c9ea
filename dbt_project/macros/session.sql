{#- Pin the session time zone to UTC (run as on-run-start and as every model's pre-hook). -#}
{% macro set_session_timezone_utc() -%}
    {{ return(adapter.dispatch('set_session_timezone_utc', 'ops_warehouse')()) }}
{%- endmacro %}

{% macro default__set_session_timezone_utc() -%}
    set time zone 'UTC'
{%- endmacro %}

{% macro duckdb__set_session_timezone_utc() -%}
    set timezone = 'UTC'
{%- endmacro %}

{% macro postgres__set_session_timezone_utc() -%}
    set time zone 'UTC'
{%- endmacro %}
