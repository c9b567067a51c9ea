{#- Helpers of the error analytics marts (correlation, shutdowns, recovery). Same numbers on
    DuckDB and PostgreSQL: integer sums stay integers, durations come from exact microsecond /
    numeric differences, and every float is computed by the same formula on both targets. -#}

{# Seconds from ts_from to ts_to as double precision (exact µs difference, then one rounding). #}
{% macro ops_an_seconds_between(ts_from, ts_to) -%}
    {{ return(adapter.dispatch('ops_an_seconds_between', 'ops_warehouse')(ts_from, ts_to)) }}
{%- endmacro %}

{% macro default__ops_an_seconds_between(ts_from, ts_to) -%}
    cast(extract(epoch from ({{ ts_to }} - {{ ts_from }})) as double precision)
{%- endmacro %}

{% macro duckdb__ops_an_seconds_between(ts_from, ts_to) -%}
    (cast(date_diff('microsecond', {{ ts_from }}, {{ ts_to }}) as double) / 1000000.0)
{%- endmacro %}

{% macro postgres__ops_an_seconds_between(ts_from, ts_to) -%}
    cast(extract(epoch from ({{ ts_to }} - {{ ts_from }})) as double precision)
{%- endmacro %}


{# Minutes from ts_from to ts_to (double precision). #}
{% macro ops_an_minutes_between(ts_from, ts_to) -%}
    ({{ ops_an_seconds_between(ts_from, ts_to) }} / 60.0)
{%- endmacro %}


{# Whole hours from ts_from to ts_to (bigint; exact when both are hour starts). #}
{% macro ops_an_hours_between(ts_from, ts_to) -%}
    cast(floor({{ ops_an_seconds_between(ts_from, ts_to) }} / 3600.0 + 0.5) as bigint)
{%- endmacro %}


{# The integers 0 .. 10^digits - 1 as column `n` (a portable number table, no generate_series). #}
{% macro ops_an_integers(digits=5) -%}
    select
        {% for d in range(digits) -%}
        d{{ d }}.digit * {{ 10 ** d }}{% if not loop.last %} + {% endif %}
        {%- endfor %} as n
    from
        {% for d in range(digits) -%}
        (
            {% for v in range(10) %}select {{ v }} as digit{% if not loop.last %} union all {% endif %}{% endfor %}
        ) as d{{ d }}{% if not loop.last %} cross join {% endif %}
        {% endfor %}
{%- endmacro %}


{# Literal rows of one integer column for lo .. hi (inclusive). #}
{% macro ops_an_int_range(lo, hi, column='n') -%}
    {% for v in range(lo, hi + 1) %}select {{ v }} as {{ column }}{% if not loop.last %} union all {% endif %}{% endfor %}
{%- endmacro %}


{#
    Pearson correlation from sums: n, Σx, Σy, Σxy, Σx², Σy² (integers or floats).
    (nΣxy − ΣxΣy) / sqrt((nΣx² − (Σx)²)(nΣy² − (Σy)²)); NULL when n < 3 or a variance is 0.
#}
{% macro ops_an_pearson(n, sx, sy, sxy, sxx, syy) -%}
    case
        when {{ n }} >= 3
         and ({{ n }} * {{ sxx }} - {{ sx }} * {{ sx }}) > 0
         and ({{ n }} * {{ syy }} - {{ sy }} * {{ sy }}) > 0
        then cast(({{ n }} * {{ sxy }} - {{ sx }} * {{ sy }}) as double precision)
             / sqrt(
                 cast(({{ n }} * {{ sxx }} - {{ sx }} * {{ sx }}) as double precision)
                 * cast(({{ n }} * {{ syy }} - {{ sy }} * {{ sy }}) as double precision)
             )
    end
{%- endmacro %}


{# Continuous percentile (linear interpolation) of expr, as an aggregate. #}
{% macro ops_an_percentile(expr, fraction) -%}
    {{ return(adapter.dispatch('ops_an_percentile', 'ops_warehouse')(expr, fraction)) }}
{%- endmacro %}

{% macro default__ops_an_percentile(expr, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expr }})
{%- endmacro %}

{% macro duckdb__ops_an_percentile(expr, fraction) -%}
    quantile_cont({{ expr }}, {{ fraction }})
{%- endmacro %}

{% macro postgres__ops_an_percentile(expr, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expr }})
{%- endmacro %}


{#
    Continuous percentile (linear interpolation, as percentile_cont) as an aggregate over rows
    ranked by value within the group: k the 1-based rank, n the group's row count, next_value
    lead(value) in the same order. The position (n - 1) * fraction is exact decimal arithmetic
    and the interpolation one float formula, so both targets give the same bits (their
    built-in percentiles round differently). fraction: a decimal literal such as 0.95.
#}
{% macro ops_ranked_percentile(value, next_value, k, n, fraction) -%}
    max(case when {{ k }} = floor(({{ n }} - 1) * {{ fraction }}) + 1 then
        {{ value }} + (coalesce({{ next_value }}, {{ value }}) - {{ value }})
          * cast(({{ n }} - 1) * {{ fraction }} - floor(({{ n }} - 1) * {{ fraction }}) as double precision)
    end)
{%- endmacro %}


{# Comma-separated sorted distinct non-NULL values of expr, as an aggregate (NULL when none). #}
{% macro ops_an_distinct_list(expr) -%}
    string_agg(distinct {{ expr }}, ', ' order by {{ expr }})
{%- endmacro %}


{# Whole microseconds from ts_from to ts_to as bigint (exact; sum these, not float minutes). #}
{% macro ops_an_microseconds_between(ts_from, ts_to) -%}
    {{ return(adapter.dispatch('ops_an_microseconds_between', 'ops_warehouse')(ts_from, ts_to)) }}
{%- endmacro %}

{% macro default__ops_an_microseconds_between(ts_from, ts_to) -%}
    cast(round(extract(epoch from ({{ ts_to }} - {{ ts_from }})) * 1000000) as bigint)
{%- endmacro %}

{% macro duckdb__ops_an_microseconds_between(ts_from, ts_to) -%}
    date_diff('microsecond', {{ ts_from }}, {{ ts_to }})
{%- endmacro %}

{% macro postgres__ops_an_microseconds_between(ts_from, ts_to) -%}
    cast(round(extract(epoch from ({{ ts_to }} - {{ ts_from }})) * 1000000) as bigint)
{%- endmacro %}


{#
    Where an incremental run of mart_shutdown_episodes starts: the last success signal at or
    before as_of − var('shutdown_rebuild_hours') (searched in the var('shutdown_anchor_search_days')
    days before), or 1970 (recompute everything) when none is found. Every gap that starts at or
    after the anchor is recomputed; gaps before it ended with a success and are final. Used by the
    model and its pre-hook, so both see the same instant.
#}
{% macro ops_shutdown_rebuild_anchor() -%}
    {%- set rebuild_hours = var('shutdown_rebuild_hours', 48) | int -%}
    {%- set search_hours = 24 * (var('shutdown_anchor_search_days', 14) | int) -%}
    (
        select coalesce(max(anchor_signals.signal_at), {{ timestamptz_literal('1970-01-01T00:00:00+00:00') }})
        from {{ ref('int_shutdown_signals') }} as anchor_signals
        where anchor_signals.signal_kind = 'success'
          and anchor_signals.signal_at <= {{ timestamp_add(as_of_timestamp(), -rebuild_hours, 'hour') }}
          and anchor_signals.signal_at > {{ timestamp_add(as_of_timestamp(), -(rebuild_hours + search_hours), 'hour') }}
    )
{%- endmacro %}


{#
    P(Z > z) for a standard normal Z (upper tail), portable SQL: Abramowitz & Stegun 26.2.17
    (absolute error < 7.5e-8) on |z| capped at 30 (so exp() never underflows, which PostgreSQL
    raises as an error; the tail beyond 30 is < 1e-197), mirrored for z < 0. NULL when z is NULL.
#}
{% macro ops_an_normal_upper_tail(z) -%}
    case
        when ({{ z }}) is null then null
        when ({{ z }}) >= 0 then {{ _ops_an_normal_tail_abs(z) }}
        else 1.0 - {{ _ops_an_normal_tail_abs(z) }}
    end
{%- endmacro %}

{% macro _ops_an_normal_tail_abs(z) -%}
    {%- set x = 'least(abs(' ~ z ~ '), 30.0)' -%}
    {%- set t = '(1.0 / (1.0 + 0.2316419 * ' ~ x ~ '))' -%}
    (0.3989422804014327 * exp(-0.5 * {{ x }} * {{ x }}) * {{ t }}
     * (0.319381530 + {{ t }} * (-0.356563782 + {{ t }} * (1.781477937
        + {{ t }} * (-1.821255978 + {{ t }} * 1.330274429)))))
{%- endmacro %}

{#
    Fisher's z of a correlation r: atanh(r) = ½ ln((1 + r) / (1 − r)), r clamped to ±0.999999 so
    r = ±1 gives a large finite value (≈ ±7.25) instead of a division by zero.
#}
{% macro ops_an_fisher_z(r) -%}
    (0.5 * ln(
        (1.0 + least(greatest(cast({{ r }} as double precision), -0.999999), 0.999999))
        / (1.0 - least(greatest(cast({{ r }} as double precision), -0.999999), 0.999999))
    ))
{%- endmacro %}
