{{ config(materialized='table') }}

{#-
    Event-level synonym evidence for mart_error_correlation: for each ordered pair of error
    families of int_corr_family_hour_diffs, the share of A's error events (last
    var('corr_window_days') days before as_of, like the hourly series) that have an error event of
    B on the same decision_id or the same job_name at most var('corr_synonym_max_gap_seconds')
    seconds away. Two writers logging one failure do so within milliseconds on the same decision
    or job; a cause is followed by its effect minutes or hours later, so it never pairs up here.

    No unbounded self-join: events are cut into buckets of the gap's width, and an event only
    meets the events of the same key in its own and the two adjacent buckets (every partner within
    the gap is there), then the exact gap is checked.
-#}

{%- set window_days = var('corr_window_days', 30) | int %}
{%- set max_gap_us = (var('corr_synonym_max_gap_seconds', 5) | float * 1000000) | int %}
{#- the window's bounds as expressions, the same on every reference (no one-row CTE to join) -#}
{%- set window_start = timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') %}
{%- set window_end = as_of_timestamp() %}

with

families as (

    select distinct error_family
    from {{ ref('int_corr_family_hour_diffs') }}

),

classified as (

    select event_id, error_family, job_name, created_at
    from {{ ref('int_events_classified') }}
    where is_error
      and created_at >= {{ window_start }}
      and created_at <= {{ window_end }}

),

-- decision_id lives on the fact table only
facts as (

    select event_id, decision_id
    from {{ ref('fct_system_events') }}
    where created_at >= {{ window_start }}
      and created_at <= {{ window_end }}
      and decision_id is not null

),

error_events as (

    select
        classified.event_id,
        classified.error_family,
        classified.job_name,
        facts.decision_id,
        {{ ops_an_microseconds_between(window_start, 'classified.created_at') }} as at_us
    from classified
    inner join families on families.error_family = classified.error_family
    left join facts on facts.event_id = classified.event_id

),

family_events as (

    select error_family, count(*) as n_events
    from error_events
    group by error_family

),

-- one row per event and key it carries (decision, job), with its gap-wide time bucket
keyed as (

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
        from error_events
        where decision_id is not null
        union all
        select event_id, error_family, 'job' as key_type,
               cast(job_name as {{ dbt.type_string() }}) as key_value, at_us
        from error_events
        where job_name is not null
    ) keys

),

-- each event looks for partners in its own bucket and the two adjacent ones (every event within
-- the gap is there). Spelled as a union, not a cross join with the offsets, so that the bucket
-- is part of the join key on PostgreSQL too: a busy job is never joined with itself whole
probes as (

    {% for bucket_offset in (-1, 0, 1) -%}
    select event_id, error_family, key_type, key_value, at_us, time_bucket + ({{ bucket_offset }}) as probe_bucket
    from keyed
    {% if not loop.last %}union all
    {% endif %}
    {%- endfor %}

),

-- A's events with at least one event of another family B on the same key within the gap
partnered as (

    select distinct
        a.error_family as family_a,
        b.error_family as family_b,
        a.event_id
    from probes as a
    inner join keyed as b
        on b.key_type = a.key_type
       and b.key_value = a.key_value
       and b.time_bucket = a.probe_bucket
    where b.error_family <> a.error_family
      and abs(b.at_us - a.at_us) <= {{ max_gap_us }}

),

co_logged as (

    select family_a, family_b, count(*) as n_co_logged
    from partnered
    group by family_a, family_b

),

final as (

    -- the relation is symmetric (A has a partner in B iff B has one in A): both rows exist
    select
        a_to_b.family_a,
        a_to_b.family_b,
        events_a.n_events as n_events_a,
        events_b.n_events as n_events_b,
        a_to_b.n_co_logged as n_co_logged_a,
        b_to_a.n_co_logged as n_co_logged_b,
        cast(a_to_b.n_co_logged as double precision) / cast(events_a.n_events as double precision) as co_logged_share_a,
        cast(b_to_a.n_co_logged as double precision) / cast(events_b.n_events as double precision) as co_logged_share_b
    from co_logged as a_to_b
    inner join co_logged as b_to_a
        on b_to_a.family_a = a_to_b.family_b
       and b_to_a.family_b = a_to_b.family_a
    inner join family_events as events_a on events_a.error_family = a_to_b.family_a
    inner join family_events as events_b on events_b.error_family = a_to_b.family_b

)

select * from final
