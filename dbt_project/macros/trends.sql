{#-
    Macros of the error trend marts (int_events_classified, int_hour_spine,
    mart_error_trends_hourly / _periodic, mart_error_rank_7d_30d). Names start with ops_trend_.
-#}

{#
    The error family of a lower-cased event type: parameterised types folded.
      <job>_job_execution_failed  → job_execution_failed
      <job>_consecutive_failures  → consecutive_failures
      error_<type>                → <type>  (ErrorTracker; error_spike_alert is an alert, kept)
      anything else               → lower(event_type)
    Plain left/right/length (no regex), the same on both targets.
#}
{% macro ops_trend_error_family(event_type_lc) -%}
    case
        when {{ strip_suffix(event_type_lc, '_job_execution_failed') }} is not null
            then 'job_execution_failed'
        when {{ strip_suffix(event_type_lc, '_consecutive_failures') }} is not null
            then 'consecutive_failures'
        when {{ event_type_lc }} <> 'error_spike_alert'
         and length({{ event_type_lc }}) > 6
         and left({{ event_type_lc }}, 6) = 'error_'
            then substr({{ event_type_lc }}, 7)
        else {{ event_type_lc }}
    end
{%- endmacro %}


{# The job a parameterised job-health event type names (NULL for other types); pass the
   lower-cased event type (both macros take it lower-cased, computed once per row). #}
{% macro ops_trend_job_from_event_type(event_type_lc) -%}
    coalesce(
        {{ strip_suffix(event_type_lc, '_job_execution_failed') }},
        {{ strip_suffix(event_type_lc, '_consecutive_failures') }}
    )
{%- endmacro %}


{#
    True when a (folded) family reads as a failure by its name: ends with _failed, _failure,
    _failures, _error, _exception, _timeout or is consecutive_failures / job_execution_failed.
    Used for events written with no (or an unknown) severity.
#}
{% macro ops_trend_is_errorish_family(family) -%}
    (
        {%- for suffix in ['_failed', '_failure', '_failures', '_error', '_exception', '_timeout'] %}
        right({{ family }}, {{ suffix | length }}) = '{{ suffix }}'{% if not loop.last %} or{% endif %}
        {%- endfor %}
    )
{%- endmacro %}


{#
    A seed rule (alias `rule`: match_type, pattern) matching a lower-cased text expression.
    exact | prefix | suffix | contains; strpos / left / right, no LIKE wildcards.
#}
{% macro ops_trend_rule_matches(rule, text) -%}
    (
        ({{ rule }}.match_type = 'exact' and {{ text }} = {{ rule }}.pattern)
        or ({{ rule }}.match_type = 'prefix' and left({{ text }}, length({{ rule }}.pattern)) = {{ rule }}.pattern)
        or ({{ rule }}.match_type = 'suffix' and right({{ text }}, length({{ rule }}.pattern)) = {{ rule }}.pattern)
        or ({{ rule }}.match_type = 'contains' and strpos({{ text }}, {{ rule }}.pattern) > 0)
    )
{%- endmacro %}


{#
    Start of the UTC day / week (ISO, Monday) / month holding a timestamptz, as a timestamptz.
#}
{% macro ops_trend_trunc_utc(unit, ts) -%}
    {%- if unit not in ('hour', 'day', 'week', 'month') -%}
        {{ exceptions.raise_compiler_error("ops_trend_trunc_utc: unit must be hour, day, week or month, got " ~ unit) }}
    {%- endif -%}
    {{ return(adapter.dispatch('ops_trend_trunc_utc', 'ops_warehouse')(unit, ts)) }}
{%- endmacro %}

{% macro default__ops_trend_trunc_utc(unit, ts) -%}
    (date_trunc('{{ unit }}', ({{ ts }} at time zone 'UTC')) at time zone 'UTC')
{%- endmacro %}

{% macro duckdb__ops_trend_trunc_utc(unit, ts) -%}
    timezone('UTC', date_trunc('{{ unit }}', timezone('UTC', {{ ts }})))
{%- endmacro %}

{% macro postgres__ops_trend_trunc_utc(unit, ts) -%}
    date_trunc('{{ unit }}', {{ ts }}, 'UTC')
{%- endmacro %}


{#
    A FROM item yielding the integers 0 … n-1 in a column `offset_n` (n an integer SQL expression
    or scalar subquery; n <= 0 gives no rows).
#}
{% macro ops_trend_integer_series(n) -%}
    {{ return(adapter.dispatch('ops_trend_integer_series', 'ops_warehouse')(n)) }}
{%- endmacro %}

{% macro default__ops_trend_integer_series(n) -%}
    generate_series(0, cast(({{ n }}) as integer) - 1) as integer_series (offset_n)
{%- endmacro %}

{% macro duckdb__ops_trend_integer_series(n) -%}
    (select range as offset_n from range(0, cast(({{ n }}) as bigint))) as integer_series
{%- endmacro %}

{% macro postgres__ops_trend_integer_series(n) -%}
    generate_series(0, cast(({{ n }}) as integer) - 1) as integer_series (offset_n)
{%- endmacro %}


{# Whole hours between two timestamptz expressions (b - a), as a bigint. #}
{% macro ops_trend_hours_between(a, b) -%}
    {{ return(adapter.dispatch('ops_trend_hours_between', 'ops_warehouse')(a, b)) }}
{%- endmacro %}

{% macro default__ops_trend_hours_between(a, b) -%}
    cast(floor(extract(epoch from ({{ b }} - {{ a }})) / 3600) as bigint)
{%- endmacro %}

{% macro duckdb__ops_trend_hours_between(a, b) -%}
    cast(floor((epoch({{ b }}) - epoch({{ a }})) / 3600) as bigint)
{%- endmacro %}

{% macro postgres__ops_trend_hours_between(a, b) -%}
    cast(floor(extract(epoch from ({{ b }} - {{ a }})) / 3600) as bigint)
{%- endmacro %}


{# x / y as double precision, NULL when y is 0 or NULL (never a division by zero). #}
{% macro ops_trend_ratio(x, y) -%}
    (cast({{ x }} as double precision) / nullif(cast({{ y }} as double precision), 0))
{%- endmacro %}


{# 100 · x / y as double precision (a percent), NULL when y is 0 or NULL. The `pct_` columns hold
   percents (an analyst reads pct_change = 50 as +50 %), the `*_rate` / `share_*` columns ratios. #}
{% macro ops_trend_percent(x, y) -%}
    (100.0 * cast({{ x }} as double precision) / nullif(cast({{ y }} as double precision), 0))
{%- endmacro %}


{# The event types counted as operations (var trend_operation_event_types), as a SQL list. #}
{% macro ops_trend_operation_types_sql() -%}
    {%- set types = var('trend_operation_event_types', ['timer_fired', 'posting_attempt_started']) -%}
    ({% for t in types %}'{{ t | replace("'", "") }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}


{#
    Post-hook of mart_template_rank_7d_30d: the miner's mart_error_templates takes its 7- and
    30-day counts from this mart's windows (the same events: templated, not deleted, in
    (as_of − n days, as_of], under the live template id), so the miner no longer re-counts 30
    days of events on every run. Templates outside the windows get 0.
#}
{% macro ops_update_template_window_counts() -%}
    update {{ source('templates', 'mart_error_templates') }} as templates set
        n_events_7d = coalesce((
            select ranked.n_events from {{ this }} as ranked
            where ranked.window_days = 7 and ranked.template_id = templates.template_id
        ), 0),
        n_events_30d = coalesce((
            select ranked.n_events from {{ this }} as ranked
            where ranked.window_days = 30 and ranked.template_id = templates.template_id
        ), 0)
{%- endmacro %}
