{#-
    Time arithmetic and UTC bucketing. Every bucket is computed in UTC explicitly, so a result
    never depends on the session or server time zone.
-#}

{# Calendar date of a timestamptz in UTC (the checklist's DATE(created_at) on a UTC server). #}
{% macro to_utc_date(ts) -%}
    {{ return(adapter.dispatch('to_utc_date', 'ops_warehouse')(ts)) }}
{%- endmacro %}

{% macro default__to_utc_date(ts) -%}
    cast(({{ ts }} at time zone 'UTC') as date)
{%- endmacro %}

{% macro duckdb__to_utc_date(ts) -%}
    cast(timezone('UTC', {{ ts }}) as date)
{%- endmacro %}

{% macro postgres__to_utc_date(ts) -%}
    cast(({{ ts }} at time zone 'UTC') as date)
{%- endmacro %}


{# Start of the UTC hour holding a timestamptz, as a timestamptz. #}
{% macro trunc_utc_hour(ts) -%}
    {{ return(adapter.dispatch('trunc_utc_hour', 'ops_warehouse')(ts)) }}
{%- endmacro %}

{% macro default__trunc_utc_hour(ts) -%}
    (date_trunc('hour', ({{ ts }} at time zone 'UTC')) at time zone 'UTC')
{%- endmacro %}

{% macro duckdb__trunc_utc_hour(ts) -%}
    timezone('UTC', date_trunc('hour', timezone('UTC', {{ ts }})))
{%- endmacro %}

{% macro postgres__trunc_utc_hour(ts) -%}
    date_trunc('hour', {{ ts }}, 'UTC')
{%- endmacro %}


{#
    ts + n units, where n is an integer SQL expression (may be negative) and unit is one of
    minute, hour, day. Use hours for fixed-length windows ("7 days" = 168 hours) so that DST
    rules of a session time zone can never stretch a window.
#}
{% macro timestamp_add(ts, n, unit) -%}
    {%- if unit not in ('minute', 'hour', 'day') -%}
        {{ exceptions.raise_compiler_error("timestamp_add: unit must be minute, hour or day, got " ~ unit) }}
    {%- endif -%}
    {{ return(adapter.dispatch('timestamp_add', 'ops_warehouse')(ts, n, unit)) }}
{%- endmacro %}

{% macro default__timestamp_add(ts, n, unit) -%}
    ({{ ts }} + (interval '1 {{ unit }}' * ({{ n }})))
{%- endmacro %}

{% macro duckdb__timestamp_add(ts, n, unit) -%}
    ({{ ts }} + to_{{ unit }}s(cast({{ n }} as bigint)))
{%- endmacro %}

{% macro postgres__timestamp_add(ts, n, unit) -%}
    {%- set arg = {'minute': 'mins', 'hour': 'hours', 'day': 'days'}[unit] -%}
    ({{ ts }} + make_interval({{ arg }} => cast({{ n }} as integer)))
{%- endmacro %}


{# A timestamptz literal from an ISO-8601 string; give an offset (Z or +00:00). #}
{% macro timestamptz_literal(value) -%}
    {%- if "'" in (value | string) -%}
        {{ exceptions.raise_compiler_error("timestamptz_literal: invalid value " ~ value) }}
    {%- endif -%}
    {{ return(adapter.dispatch('timestamptz_literal', 'ops_warehouse')(value | string)) }}
{%- endmacro %}

{% macro default__timestamptz_literal(value) -%}
    cast('{{ value }}' as timestamp with time zone)
{%- endmacro %}

{% macro duckdb__timestamptz_literal(value) -%}
    cast('{{ value }}' as timestamptz)
{%- endmacro %}

{% macro postgres__timestamptz_literal(value) -%}
    cast('{{ value }}' as timestamptz)
{%- endmacro %}


{# var('as_of') as a timestamptz, or the start of this dbt invocation when the var is unset (one
   instant for every model and hook of a run, so windows computed twice in a run agree). #}
{% macro as_of_timestamp() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- if as_of is none or (as_of | string | trim) in ('', 'None', 'null', 'now') -%}
        {{ timestamptz_literal(run_started_at.isoformat()) }}
    {%- else -%}
        {{ timestamptz_literal(as_of | string | trim) }}
    {%- endif -%}
{%- endmacro %}


{#
    A timestamp bound computed once, before the model's query runs, and written into it as an
    exact literal (to the microsecond: a watermark compared with `>` must not be floored — a bulk
    load stamps every row alike, and a floored stamp would take them all for new).
    An incremental bound written as a subquery (`created_at >= (select … from this)`) leaves
    PostgreSQL guessing a third of the table and scanning it all; a literal lets it read the
    bound's index range. `scalar_sql` is a parenthesised scalar subquery; 1970 when it is NULL.
#}
{% macro ops_timestamp_bound(scalar_sql) -%}
    {#- a unit test's `this` is a CTE of its query, out of run_query's reach: keep the subquery #}
    {%- if '__dbt__cte__' in scalar_sql -%}{{ return(scalar_sql) }}{%- endif -%}
    {%- set microseconds = 0 -%}
    {%- if execute -%}
        {%- set microseconds = ops_query_value("select " ~ ops_an_microseconds_between(
                timestamptz_literal('1970-01-01T00:00:00+00:00'), scalar_sql)) -%}
    {%- endif -%}
    {%- set bound = modules.datetime.datetime(1970, 1, 1) + modules.datetime.timedelta(microseconds=(microseconds or 0) | int) -%}
    {{ timestamptz_literal(bound.isoformat() ~ '+00:00') }}
{%- endmacro %}


{# The first value of a query's first row (None when it has no row or is NULL). #}
{% macro ops_query_value(sql) -%}
    {%- set found = run_query(sql) -%}
    {%- set values = found.columns[0].values() if found.columns | length > 0 else [] -%}
    {{ return(values[0] if values | length > 0 else none) }}
{%- endmacro %}
