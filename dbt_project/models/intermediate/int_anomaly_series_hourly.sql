{#-
    The hourly count series the anomaly scorer reads (orchestration/lib/anomaly/warehouse.py →
    marts.mart_anomalies), counted from the warehouse with the same names, kinds and counting
    rules as SERIES_SQL in orchestration/lib/anomaly/series.py (which counts them on a source):

        errors:<x>              errors          event_type error_<x>, except error_null_tweet_id
        job_failures:<job>      job_failures    <job>_job_execution_failed (job: payload job_name,
                                                else the event type's prefix)
        job_streaks:<job>       job_failures    the same, payload consecutive_failures >= 3
        null_tweet_id           null_tweet_id   error_null_tweet_id
        circuit_breaker_events  events          circuit_breaker_*
        queue_blocked:<reason>  events          POSTING_QUEUE_BLOCKED, payload reason in the
                                                stop reasons (var anomaly_stop_reasons)
        posting_volume          volume          POST_SUCCESS + REPLY_SUCCESS
        error_category:<c>      errors          error events (int_events_classified.is_error) per
                                                error category; only here, not in SERIES_SQL

    Sparse: one row per (series, hour) with at least one event; the Python side densifies (an
    hour without a row is a zero). Deleted events are left out (the source no longer has them).
    Window: the hours of [as_of - var('anomaly_history_days', 35) days, as_of); as_of is
    var('as_of') when set, else the time of the query (a view: always the latest hours).
    window_start / window_end repeat the window on every row so a reader can tell which hours
    the view covers. One scan of fct_system_events (its created_at index on PostgreSQL); the
    payload is read only for job failures and queue blocks.
-#}

{%- set history_days = var('anomaly_history_days', 35) | int %}
{%- set stop_reasons = var('anomaly_stop_reasons',
        ['CIRCUIT_BREAKER', 'POSTING_DISABLED', 'GHOST_PROTECTION', 'MIGRATION_HEALTH']) %}
{%- set as_of = var('as_of', none) %}
{%- if as_of is none or (as_of | string | trim) in ('', 'None', 'null', 'now') %}
    {%- set window_end = 'current_timestamp' %}
{%- else %}
    {%- set window_end = as_of_timestamp() %}
{%- endif %}
{#- the bounds as expressions, not subqueries: PostgreSQL then estimates the range and reads
    the window by index instead of guessing a third of the table #}
{%- set window_start = timestamp_add(window_end, -24 * history_days, 'hour') %}

with

params as (

    select
        {{ window_start }} as window_start,
        {{ window_end }} as window_end

),

events as (

    select
        fct.event_type,
        fct.created_hour as hour_start,
        fct.payload
    from {{ ref('fct_system_events') }} as fct
    where fct.created_at >= {{ window_start }}
      and fct.created_at < {{ window_end }}
      and not fct.is_deleted
      and (
          left(fct.event_type, 6) = 'error_'
          or right(fct.event_type, 21) = '_job_execution_failed'
          or left(fct.event_type, 16) = 'circuit_breaker_'
          or fct.event_type in ('POSTING_QUEUE_BLOCKED', 'POST_SUCCESS', 'REPLY_SUCCESS')
      )

),

classified as (

    select
        hour_start,
        case
            when event_type = 'error_null_tweet_id' then 'null_tweet_id'
            when left(event_type, 6) = 'error_' then 'errors:' || substr(event_type, 7)
            when right(event_type, 21) = '_job_execution_failed' then 'job_failures:' || coalesce(
                {{ json_text('payload', 'job_name') }},
                left(event_type, length(event_type) - 21)
            )
            when left(event_type, 16) = 'circuit_breaker_' then 'circuit_breaker_events'
            when event_type = 'POSTING_QUEUE_BLOCKED' then 'queue_blocked:' || {{ json_text('payload', 'reason') }}
            else 'posting_volume'
        end as series,
        case
            when event_type = 'error_null_tweet_id' then 'null_tweet_id'
            when left(event_type, 6) = 'error_' then 'errors'
            when right(event_type, 21) = '_job_execution_failed' then 'job_failures'
            when left(event_type, 16) = 'circuit_breaker_' then 'events'
            when event_type = 'POSTING_QUEUE_BLOCKED' then 'events'
            else 'volume'
        end as series_kind,
        case
            when right(event_type, 21) = '_job_execution_failed'
            then {{ safe_cast_bigint(json_text('payload', 'consecutive_failures')) }}
        end as consecutive_failures,
        case
            when event_type = 'POSTING_QUEUE_BLOCKED' then {{ json_text('payload', 'reason') }}
        end as queue_reason
    from events

),

counted as (

    select series, series_kind, hour_start, count(*) as n_events
    from classified
    where series is not null
      and (series_kind <> 'events' or series = 'circuit_breaker_events'
           or queue_reason in ({% for r in stop_reasons %}'{{ r }}'{% if not loop.last %}, {% endif %}{% endfor %}))
    group by series, series_kind, hour_start

    union all

    select
        'job_streaks:' || substr(series, 14) as series,
        series_kind,
        hour_start,
        count(*) as n_events
    from classified
    where series_kind = 'job_failures'
      and consecutive_failures >= 3
    group by series, series_kind, hour_start

),

{#- errors per category (the seed error_category_map's classification): one more view of the
    same errors, for the operator; the benchmark's SERIES_SQL has no category series -#}
categories as (

    select
        'error_category:' || classified_events.error_category as series,
        'errors' as series_kind,
        classified_events.created_hour as hour_start,
        count(*) as n_events
    from {{ ref('int_events_classified') }} as classified_events
    where classified_events.is_error
      and classified_events.created_at >= {{ window_start }}
      and classified_events.created_at < {{ window_end }}
    group by classified_events.error_category, classified_events.created_hour

),

all_series as (

    select * from counted
    union all
    select * from categories

),

final as (

    select
        counted.series,
        counted.series_kind,
        counted.hour_start,
        counted.n_events,
        params.window_start,
        params.window_end
    from all_series as counted
    cross join params

)

select * from final
