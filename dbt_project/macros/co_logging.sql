{#
    Error events logged twice: `error_events` is a relation (or CTE name) of error events with
    event_id, error_family, job_name, decision_id and at_us (microseconds from any fixed instant);
    returns one row per (family_a, family_b, event_id) for each event of A with at least one event
    of another family B on the same decision_id or job_name at most
    var('corr_synonym_max_gap_seconds') seconds away. Used by int_error_family_co_logging_hours
    (per hour, incremental) and int_error_family_co_logging (the hours a window boundary cuts).

    No unbounded self-join: events are cut into buckets of the gap's width, and an event only
    meets the events of the same key in its own and the two adjacent buckets (every partner within
    the gap is there), then the exact gap is checked. The probes are spelled as a union, not a
    cross join with the offsets, so that the bucket is part of the join key on PostgreSQL too: a
    busy job is never joined with itself whole.
#}
{% macro ops_co_logged_events(error_events) -%}
    {%- set max_gap_us = (var('corr_synonym_max_gap_seconds', 5) | float * 1000000) | int -%}
    select distinct
        a.error_family as family_a,
        b.error_family as family_b,
        a.event_id
    from (
        {% for bucket_offset in (-1, 0, 1) -%}
        select event_id, error_family, key_type, key_value, at_us, time_bucket + ({{ bucket_offset }}) as probe_bucket
        from ({{ _ops_co_logging_keyed(error_events, max_gap_us) }}) as keyed
        {% if not loop.last %}union all
        {% endif %}
        {%- endfor %}
    ) as a
    inner join ({{ _ops_co_logging_keyed(error_events, max_gap_us) }}) as b
        on b.key_type = a.key_type
       and b.key_value = a.key_value
       and b.time_bucket = a.probe_bucket
    where b.error_family <> a.error_family
      and abs(b.at_us - a.at_us) <= {{ max_gap_us }}
{%- endmacro %}


{# one row per event and key it carries (decision, job), with its gap-wide time bucket #}
{% macro _ops_co_logging_keyed(error_events, max_gap_us) -%}
    select
        event_id,
        error_family,
        key_type,
        key_value,
        at_us,
        cast(floor(cast(at_us as double precision) / {{ max_gap_us }}) as bigint) as time_bucket
    from (
        select event_id, error_family, 'decision' as key_type,
               cast(decision_id as {{ dbt.type_string() }}) as key_value, at_us
        from {{ error_events }}
        where decision_id is not null
        union all
        select event_id, error_family, 'job' as key_type,
               cast(job_name as {{ dbt.type_string() }}) as key_value, at_us
        from {{ error_events }}
        where job_name is not null
    ) as keys
{%- endmacro %}


{#
    The first hour int_error_family_co_logging_hours rebuilds (a scalar subquery on its table):
    the hour before that of the oldest fct_system_events row loaded (or marked deleted) after its
    newest source_loaded_through; far in the future when nothing was loaded since.
#}
{% macro ops_co_logging_rebuild_from() -%}
    {%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') -%}
    {%- set loaded_since = ops_oldest_created_at_loaded_after(
            ref('fct_system_events'),
            'select coalesce(max(built.source_loaded_through), ' ~ epoch ~ ') from ' ~ this ~ ' as built') -%}
    (select coalesce(
        {{ timestamp_add(trunc_utc_hour(loaded_since), -1, 'hour') }},
        {{ ops_far_future() }}
    ))
{%- endmacro %}


{#
    The error events co-logging pairs (int_events_classified, is_error) with their decision_id
    (it lives on the fact table only) and at_us (microseconds since 1970), for the events whose
    created_at satisfies `created_at_filter` (SQL on an unqualified created_at).
#}
{% macro ops_co_logging_error_events(created_at_filter) -%}
    select
        classified.event_id,
        classified.error_family,
        classified.job_name,
        facts.decision_id,
        classified.created_at,
        {{ ops_an_microseconds_between(timestamptz_literal('1970-01-01T00:00:00+00:00'), 'classified.created_at') }} as at_us
    from {{ ref('int_events_classified') }} as classified
    left join (
        select event_id, decision_id
        from {{ ref('fct_system_events') }}
        where decision_id is not null
          and {{ created_at_filter }}
    ) as facts
        on facts.event_id = classified.event_id
    where classified.is_error
      and {{ created_at_filter }}
{%- endmacro %}
