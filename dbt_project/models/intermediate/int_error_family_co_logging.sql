{{ config(materialized='table') }}

{#-
    Event-level synonym evidence for mart_error_correlation: for each ordered pair of error
    families of int_corr_family_hour_diffs, the share of A's error events (last
    var('corr_window_days') days before as_of, like the hourly series) that have an error event of
    B on the same decision_id or the same job_name at most var('corr_synonym_max_gap_seconds')
    seconds away. Two writers logging one failure do so within milliseconds on the same decision
    or job; a cause is followed by its effect minutes or hours later, so it never pairs up here.

    Sums int_error_family_co_logging_hours (incremental, per hour of A's event) over the hours
    inside the window, and pairs events (macros/co_logging.sql) only for the hours a window
    boundary cuts and the hour next to each (a partner within the gap may lie across the
    boundary): every other hour's events and their partners lie inside the window, so its
    counts are the window's. The same rows as pairing the window's events, at the cost of four
    hours of events instead of 30 days.
-#}

{%- set window_days = var('corr_window_days', 30) | int %}
{#- the window's bounds as expressions, the same on every reference (no one-row CTE to join) -#}
{%- set window_start = timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') %}
{%- set window_end = as_of_timestamp() %}
{%- set split_hours = [
    trunc_utc_hour(window_start), timestamp_add(trunc_utc_hour(window_start), 1, 'hour'),
    timestamp_add(trunc_utc_hour(window_end), -1, 'hour'), trunc_utc_hour(window_end)] %}

with

families as (

    select distinct error_family
    from {{ ref('int_corr_family_hour_diffs') }}

),

-- the hours wholly inside the window, away from its boundaries: summed
whole_hours as (

    select family_a, family_b, sum(n_events) as n_events
    from {{ ref('int_error_family_co_logging_hours') }}
    where hour_start > {{ split_hours[1] }}
      and hour_start < {{ split_hours[2] }}
    group by family_a, family_b

),

-- the split hours' error events (and their partners within the window): paired here
{%- set near_split_hours %}
    created_at >= {{ window_start }}
    and created_at <= {{ window_end }}
    and (
        {%- for split_hour in split_hours %}
        {% if not loop.first %}or {% endif %}(created_at >= {{ timestamp_add(split_hour, -1, 'hour') }} and created_at < {{ timestamp_add(split_hour, 2, 'hour') }})
        {%- endfor %}
    )
{%- endset %}
error_events as (

    {{ ops_co_logging_error_events(near_split_hours) }}

),

split_events as (

    select event_id, error_family
    from error_events
    where {{ trunc_utc_hour('created_at') }} in ({{ split_hours | join(', ') }})

),

split_counts as (

    select split_events.error_family as family_a, cast(null as {{ dbt.type_string() }}) as family_b,
           count(*) as n_events
    from split_events
    group by split_events.error_family

    union all

    select partnered.family_a, partnered.family_b, count(*)
    from ({{ ops_co_logged_events('error_events') }}) as partnered
    inner join split_events on split_events.event_id = partnered.event_id
    group by partnered.family_a, partnered.family_b

),

counts as (

    select family_a, family_b, sum(n_events) as n_events
    from (
        select * from whole_hours
        union all
        select * from split_counts
    ) as pieces
    where family_a in (select error_family from families)
      and (family_b is null or family_b in (select error_family from families))
    group by family_a, family_b

),

family_events as (

    select family_a as error_family, n_events
    from counts
    where family_b is null

),

co_logged as (

    select family_a, family_b, n_events as n_co_logged
    from counts
    where family_b is not null

),

final as (

    -- the relation is symmetric (A has a partner in B iff B has one in A): both rows exist
    select
        a_to_b.family_a,
        a_to_b.family_b,
        cast(events_a.n_events as bigint) as n_events_a,
        cast(events_b.n_events as bigint) as n_events_b,
        cast(a_to_b.n_co_logged as bigint) as n_co_logged_a,
        cast(b_to_a.n_co_logged as bigint) as n_co_logged_b,
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
