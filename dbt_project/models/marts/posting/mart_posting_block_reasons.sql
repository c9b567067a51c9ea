{#-
    Why the posting and reply queues were held: POSTING_QUEUE_BLOCKED / REPLY_QUEUE_BLOCKED
    events of int_events_classified counted per UTC hour and day × queue × payload reason, over
    the last var('posting_health_window_days', 60) days before as_of. Sparse (only reasons that
    occurred). See mart_posting_block_reasons.yml.
-#}

{%- set window_days = var('posting_health_window_days', 60) | int %}

with

events as (

    select * from {{ ref('int_events_classified') }}

),

spine as (

    select * from {{ ref('int_hour_spine') }}

),

params as (

    select
        {{ timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') }} as window_start,
        {{ as_of_timestamp() }} as as_of

),

bounds as (

    select
        min(spine.hour_start) as first_hour,
        (select as_of from params) as as_of
    from spine
    where spine.hour_start >= (select window_start from params)

),

blocks as (

    select
        created_at,
        case error_family
            when 'posting_queue_blocked' then 'posting'
            when 'reply_queue_blocked' then 'reply'
        end as queue,
        coalesce(nullif(upper(trim(reason)), ''), 'UNKNOWN') as reason
    from events
    where error_family in ('posting_queue_blocked', 'reply_queue_blocked')
      and created_at >= (select first_hour from bounds)
      and created_at < (select as_of from bounds)

),

counted as (

    {%- for grain in ['hour', 'day'] %}
    select
        '{{ grain }}' as grain,
        {{ ops_trend_trunc_utc(grain, 'created_at') }} as bucket_start,
        queue,
        reason,
        cast(count(*) as bigint) as n_blocks
    from blocks
    group by {{ ops_trend_trunc_utc(grain, 'created_at') }}, queue, reason
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

final as (

    select
        grain,
        bucket_start,
        queue,
        reason,
        reason = 'NO_READY_DECISIONS' as is_idle,
        n_blocks,
        cast(n_blocks as double precision)
            / cast(sum(n_blocks) over (partition by grain, bucket_start, queue) as double precision) as share_of_queue_blocks,
        cast(rank() over (partition by grain, bucket_start, queue order by n_blocks desc) as bigint) as reason_rank
    from counted

)

select * from final
