{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook=[
            "{{ ops_postgres_plan_hints(seq_scans=false) }}",
            "{% if is_incremental() %}delete from {{ this }} where last_success_at >= {{ ops_shutdown_rebuild_anchor() }}{% endif %}",
        ],
    )
}}

{#-
    The causes seen around each shutdown episode (mart_shutdown_episodes): per episode and cause
    (a blocking reason or an error family), the cause's events in the window from
    var('shutdown_cause_window_minutes') before the episode's start to its end (as_of while
    ongoing), split before / within the episode, with the episode's duration.

    Incremental like mart_shutdown_episodes, on the same anchor (macro
    ops_shutdown_rebuild_anchor): the episodes from the anchor on are the ones that episode model
    recomputes, so the pre-hook deletes their rows here (by last_success_at) and the run
    recomputes them, reading only the signals since anchor − the cause window (an episode starts
    at or after its last success, so its window never opens earlier). Older episodes are final,
    and so are their rows. A full build runs the same code over every episode.
-#}

{%- set before_minutes = var('shutdown_cause_window_minutes', 60) | int %}

with

episodes as (

    select * from {{ ref('mart_shutdown_episodes') }}
    {%- if is_incremental() %}
    where last_success_at >= {{ ops_shutdown_rebuild_anchor() }}
    {%- endif %}

),

signals as (

    select * from {{ ref('int_shutdown_signals') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

cause_events as (

    select
        case when signals.signal_kind = 'error' then 'error_family' else 'block_reason' end as cause_type,
        case when signals.signal_kind = 'error' then signals.error_family else signals.block_reason end as cause,
        signals.signal_at
    from signals
    cross join params
    where signals.signal_at <= params.as_of
    {%- if is_incremental() %}
      and signals.signal_at >= {{ timestamp_add(ops_shutdown_rebuild_anchor(), -before_minutes, 'minute') }}
    {%- endif %}
      and (signals.signal_kind = 'error' or signals.is_blocking)

),

windows as (

    select
        episodes.episode_id,
        episodes.last_success_at,
        episodes.shutdown_start_at,
        {{ timestamp_add('episodes.shutdown_start_at', -before_minutes, 'minute') }} as window_start_at,
        coalesce(episodes.shutdown_end_at, params.as_of) as window_end_at,
        {{ ops_an_microseconds_between('episodes.shutdown_start_at', 'coalesce(episodes.shutdown_end_at, params.as_of)') }}
            as duration_us
    from episodes
    cross join params

),

in_windows as (

    select
        windows.episode_id,
        windows.last_success_at,
        windows.duration_us,
        cause_events.cause_type,
        cause_events.cause,
        cause_events.signal_at < windows.shutdown_start_at as is_before
    from windows
    inner join cause_events
        on cause_events.signal_at >= windows.window_start_at
       and cause_events.signal_at < windows.window_end_at

),

final as (

    select
        episode_id,
        max(last_success_at) as last_success_at,
        cause_type,
        cause,
        max(duration_us) as duration_us,
        count(case when is_before then 1 end) as n_events_before,
        count(case when not is_before then 1 end) as n_events_within
    from in_windows
    group by episode_id, cause_type, cause

)

select * from final
