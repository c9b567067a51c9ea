{#-
    The signals shutdown detection reads, on one time line:
    - success: a successful post or reply (POST_SUCCESS / REPLY_SUCCESS events, and decisions
      with a posted_at — the bot's own "posted");
    - alive:   the process is running (queue ticks, queue-blocked gates, executor daemon ticks,
      executor health); is_blocking marks a queue gate that holds posting for a reason other
      than routine pacing (NO_READY_DECISIONS, SAFEGUARD_MAX_PER_HOUR, SAFEGUARD_MIN_INTERVAL);
    - error:   an error event (normalised severity error / critical), with its family.
-#}

with

events as (

    select * from {{ ref('int_events_classified') }}

),

decisions as (

    select * from {{ ref('stg_ops__decisions') }}

),

event_signals as (

    select
        event_id as signal_id,
        created_at as signal_at,
        case
            when event_type in ('POST_SUCCESS', 'REPLY_SUCCESS') then 'success'
            when event_type in (
                'POSTING_QUEUE_TICK', 'REPLY_QUEUE_TICK', 'POSTING_QUEUE_BLOCKED',
                'REPLY_QUEUE_BLOCKED', 'EXECUTOR_DAEMON_TICK', 'EXECUTOR_HEALTH_OK'
            ) then 'alive'
            when is_error then 'error'
        end as signal_kind,
        event_type,
        error_family,
        case when event_type in ('POSTING_QUEUE_BLOCKED', 'REPLY_QUEUE_BLOCKED')
            then coalesce(reason, 'UNKNOWN') end as block_reason,
        (
            event_type in ('POSTING_QUEUE_BLOCKED', 'REPLY_QUEUE_BLOCKED')
            and coalesce(reason, 'UNKNOWN') not in (
                'NO_READY_DECISIONS', 'SAFEGUARD_MAX_PER_HOUR', 'SAFEGUARD_MIN_INTERVAL'
            )
        ) as is_blocking
    from events

),

decision_signals as (

    select
        'decision:' || decision_id as signal_id,
        posted_at as signal_at,
        'success' as signal_kind,
        'decision_posted' as event_type,
        cast(null as {{ dbt.type_string() }}) as error_family,
        cast(null as {{ dbt.type_string() }}) as block_reason,
        false as is_blocking
    from decisions
    where posted_at is not null

),

final as (

    select * from event_signals where signal_kind is not null
    union all
    select * from decision_signals

)

select * from final
