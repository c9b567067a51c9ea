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
    Shutdown episodes, as the bot defines them: no successful post or reply for longer than
    var('shutdown_gap_minutes') while the process keeps running (alive signals throughout the
    gap, no silence longer than var('shutdown_max_silence_minutes')).

    An episode spans a gap between two successes. It starts at the first non-routine queue gate
    (POSTING_QUEUE_BLOCKED / REPLY_QUEUE_BLOCKED for a reason other than NO_READY_DECISIONS or
    the safeguards) after the last success — the moment the bot stopped trying — or, when no
    such gate fired, at the last success; it ends at the next success (NULL while ongoing at
    var('as_of')).

    Incremental: an episode is keyed by the success that opens its gap (last_success_at), and a
    gap is final once the next success is seen. A run recomputes from the anchor — the last
    success at or before as_of − var('shutdown_rebuild_hours') (macro ops_shutdown_rebuild_anchor)
    — reading only the signals since the anchor (minus the cause window); the pre-hook deletes the
    episodes from the anchor on, so an ongoing episode is replaced, never duplicated. A full build
    runs the same code from the first signal. Builds further apart than the rebuild horizon, or
    signals that arrive later than it, need --full-refresh.
-#}

{%- set gap_minutes = var('shutdown_gap_minutes', 120) | int %}
{%- set max_silence_minutes = var('shutdown_max_silence_minutes', 30) | int %}
{%- set min_held_share = var('shutdown_min_held_share', 0.5) | float %}
{%- set before_minutes = var('shutdown_cause_window_minutes', 60) | int %}

with

signals as (

    select * from {{ ref('int_shutdown_signals') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

in_range as (

    select signals.*
    from signals
    cross join params
    where signals.signal_at <= params.as_of
    {%- if is_incremental() %}
      and signals.signal_at >= {{ timestamp_add(ops_shutdown_rebuild_anchor(), -before_minutes, 'minute') }}
    {%- endif %}

),

successes as (

    select distinct signal_at as success_at
    from in_range
    where signal_kind = 'success'
    {%- if is_incremental() %}
      and signal_at >= {{ ops_shutdown_rebuild_anchor() }}
    {%- endif %}

),

gaps as (

    select
        successes.success_at as last_success_at,
        lead(successes.success_at) over (order by successes.success_at) as next_success_at
    from successes

),

candidates as (

    select
        gaps.last_success_at,
        gaps.next_success_at,
        coalesce(gaps.next_success_at, params.as_of) as gap_end_at
    from gaps
    cross join params
    where {{ ops_an_minutes_between('gaps.last_success_at', 'coalesce(gaps.next_success_at, params.as_of)') }}
          > {{ gap_minutes }}

),

alive_in_gap as (

    select
        candidates.last_success_at,
        in_range.signal_at,
        in_range.event_type,
        in_range.block_reason,
        in_range.is_blocking
    from candidates
    inner join in_range
        on in_range.signal_kind = 'alive'
       and in_range.signal_at > candidates.last_success_at
       and in_range.signal_at < candidates.gap_end_at

),

silence_points as (

    select last_success_at, signal_at as point_at from alive_in_gap
    union all
    select last_success_at, last_success_at from candidates
    union all
    select last_success_at, gap_end_at from candidates

),

silences as (

    select
        last_success_at,
        max(silence_minutes) as max_silence_minutes
    from (
        select
            last_success_at,
            {{ ops_an_minutes_between(
                'lag(point_at) over (partition by last_success_at order by point_at)', 'point_at'
            ) }} as silence_minutes
        from silence_points
    ) stepped
    group by last_success_at

),

alive_stats as (

    select
        last_success_at,
        count(*) as n_alive_signals,
        count(case when event_type in ('POSTING_QUEUE_TICK', 'REPLY_QUEUE_TICK') then 1 end) as n_queue_ticks,
        count(case when is_blocking then 1 end) as n_blocking_signals
    from alive_in_gap
    group by last_success_at

),

reason_counts as (

    select
        last_success_at,
        block_reason,
        count(*) as n_signals,
        row_number() over (
            partition by last_success_at
            order by count(*) desc, block_reason
        ) as reason_rank
    from alive_in_gap
    where is_blocking
    group by last_success_at, block_reason

),

dominant_reason as (

    select last_success_at, block_reason, n_signals
    from reason_counts
    where reason_rank = 1

),

{#- the final uninterrupted run of the dominant reason: a transient gate before it (a rate
    limit cooldown, a routine NO_READY_DECISIONS) does not move the start -#}
dominant_run as (

    select
        dominant_reason.last_success_at,
        max(alive_in_gap.signal_at) as last_dominant_at
    from dominant_reason
    inner join alive_in_gap
        on alive_in_gap.last_success_at = dominant_reason.last_success_at
       and alive_in_gap.block_reason = dominant_reason.block_reason
       and alive_in_gap.is_blocking
    group by dominant_reason.last_success_at

),

interruption as (

    select
        dominant_run.last_success_at,
        max(alive_in_gap.signal_at) as last_other_gate_at
    from dominant_run
    inner join dominant_reason
        on dominant_reason.last_success_at = dominant_run.last_success_at
    inner join alive_in_gap
        on alive_in_gap.last_success_at = dominant_run.last_success_at
       and alive_in_gap.block_reason is not null
       and alive_in_gap.block_reason <> dominant_reason.block_reason
       and alive_in_gap.signal_at < dominant_run.last_dominant_at
    group by dominant_run.last_success_at

),

run_start as (

    select
        dominant_reason.last_success_at,
        min(alive_in_gap.signal_at) as first_dominant_at
    from dominant_reason
    left join interruption
        on interruption.last_success_at = dominant_reason.last_success_at
    inner join alive_in_gap
        on alive_in_gap.last_success_at = dominant_reason.last_success_at
       and alive_in_gap.block_reason = dominant_reason.block_reason
       and alive_in_gap.is_blocking
       and alive_in_gap.signal_at > coalesce(interruption.last_other_gate_at, dominant_reason.last_success_at)
    group by dominant_reason.last_success_at

),

episodes as (

    select
        candidates.last_success_at,
        candidates.next_success_at,
        candidates.gap_end_at,
        coalesce(run_start.first_dominant_at, candidates.last_success_at) as shutdown_start_at,
        alive_stats.n_alive_signals,
        alive_stats.n_queue_ticks,
        alive_stats.n_blocking_signals,
        case when alive_stats.n_queue_ticks > 0
            then least(1.0, cast(alive_stats.n_blocking_signals as double precision) / alive_stats.n_queue_ticks)
        end as held_share,
        silences.max_silence_minutes,
        dominant.block_reason as dominant_block_reason,
        dominant.n_signals as dominant_block_reason_signals
    from candidates
    inner join alive_stats
        on alive_stats.last_success_at = candidates.last_success_at
    inner join silences
        on silences.last_success_at = candidates.last_success_at
    left join dominant_reason as dominant
        on dominant.last_success_at = candidates.last_success_at
    left join run_start
        on run_start.last_success_at = candidates.last_success_at
    where silences.max_silence_minutes <= {{ max_silence_minutes }}
      and (
          alive_stats.n_queue_ticks = 0
          or cast(alive_stats.n_blocking_signals as double precision) / alive_stats.n_queue_ticks
             >= {{ min_held_share }}
      )

),

errors_around as (

    select
        episodes.last_success_at,
        case when in_range.signal_at < episodes.shutdown_start_at then 'before' else 'within' end as phase,
        in_range.error_family
    from episodes
    inner join in_range
        on in_range.signal_kind = 'error'
       and in_range.signal_at >= {{ timestamp_add('episodes.shutdown_start_at', -before_minutes, 'minute') }}
       and in_range.signal_at < episodes.gap_end_at

),

error_stats as (

    select
        last_success_at,
        count(case when phase = 'before' then 1 end) as n_errors_before,
        count(case when phase = 'within' then 1 end) as n_errors_within,
        {{ ops_an_distinct_list("case when phase = 'before' then error_family end") }} as error_families_before,
        {{ ops_an_distinct_list("case when phase = 'within' then error_family end") }} as error_families_within
    from errors_around
    group by last_success_at

),

final as (

    select
        {{ surrogate_key(['episodes.last_success_at']) }} as episode_id,
        episodes.shutdown_start_at,
        episodes.next_success_at as shutdown_end_at,
        episodes.next_success_at is null as is_ongoing,
        {{ ops_an_minutes_between('episodes.shutdown_start_at', 'episodes.gap_end_at') }} as duration_minutes,
        episodes.last_success_at,
        {{ ops_an_minutes_between('episodes.last_success_at', 'episodes.gap_end_at') }} as gap_minutes,
        case when episodes.dominant_block_reason is not null then 'first_gate_of_final_run' else 'last_success' end as start_basis,
        episodes.n_alive_signals,
        episodes.n_queue_ticks,
        episodes.n_blocking_signals,
        episodes.held_share,
        episodes.max_silence_minutes,
        episodes.dominant_block_reason,
        episodes.dominant_block_reason_signals,
        coalesce(error_stats.n_errors_before, 0) as n_errors_before,
        coalesce(error_stats.n_errors_within, 0) as n_errors_within,
        error_stats.error_families_before,
        error_stats.error_families_within
    from episodes
    left join error_stats
        on error_stats.last_success_at = episodes.last_success_at

)

select * from final
