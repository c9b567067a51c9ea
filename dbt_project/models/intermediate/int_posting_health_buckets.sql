{{ config(materialized='table') }}

{#-
    Posting health per UTC hour and per UTC day (column `grain`), dense over the hours of
    int_hour_spine in the last var('posting_health_window_days', 60) days before as_of: decisions
    created, decision outcomes (posted / failed / skipped / blocked / in flight / other, each
    dated by int_decision_outcomes at when its status was reached), NULL tweet ids (by
    posted_at), scheduled-to-posted minutes and posting attempt durations. Read by
    mart_posting_health_hourly and mart_posting_health_daily; see int_posting_health_buckets.yml
    for the timestamp each count is bucketed on.
-#}

{%- set window_days = var('posting_health_window_days', 60) | int %}
{%- set alert_per_hour = var('null_tweet_id_alert_per_hour', 5) | int %}
{%- set grains = ['hour', 'day'] %}

with

spine as (

    select * from {{ ref('int_hour_spine') }}

),

decision_outcomes as (

    select * from {{ ref('int_decision_outcomes') }}

),

attempts as (

    select * from {{ ref('stg_ops__posting_attempts') }}

),

params as (

    select
        {{ timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') }} as window_start,
        {{ as_of_timestamp() }} as as_of

),

window_hours as (

    select
        spine.hour_start,
        spine.hour_end
    from spine
    where spine.hour_start >= (select window_start from params)

),

bounds as (

    select
        min(hour_start) as first_hour,
        (select as_of from params) as as_of
    from window_hours

),

outcomes as (

    {#- each decision's outcome, dated at when its current status was reached (see
        int_decision_outcomes); a NULL tweet id counts by posted_at, so only posts dated by it
        (a post without posted_at is a post, but has no date for the NULL tweet id alert) -#}
    select
        decision_id,
        outcome,
        outcome_at,
        (is_null_tweet_id and outcome_dated_by = 'posted_at') as is_null_tweet_id,
        case
            when outcome = 'posted' and scheduled_at is not null and posted_at is not null
                then {{ ops_an_microseconds_between('scheduled_at', 'posted_at') }}
        end as schedule_to_post_us
    from decision_outcomes

),

windowed_created as (

    select created_at as at_ts
    from decision_outcomes
    where created_at >= (select first_hour from bounds)
      and created_at < (select as_of from bounds)

),

windowed_outcomes as (

    select
        outcomes.*,
        outcome_at as at_ts
    from outcomes
    where outcome_at >= (select first_hour from bounds)
      and outcome_at < (select as_of from bounds)

),

windowed_attempts as (

    select
        created_at as at_ts,
        status,
        {{ safe_cast_bigint(json_text('metrics', 'total_ms')) }} as duration_ms
    from attempts
    where created_at >= (select first_hour from bounds)
      and created_at < (select as_of from bounds)

),

{%- for grain in grains %}

buckets_{{ grain }} as (

    select
        {{ ops_trend_trunc_utc(grain, 'hour_start') }} as bucket_start,
        max(hour_end) as bucket_end,
        cast(count(*) as bigint) as n_hours
    from window_hours
    group by {{ ops_trend_trunc_utc(grain, 'hour_start') }}

),

created_{{ grain }} as (

    select
        {{ ops_trend_trunc_utc(grain, 'at_ts') }} as bucket_start,
        cast(count(*) as bigint) as n_created
    from windowed_created
    group by {{ ops_trend_trunc_utc(grain, 'at_ts') }}

),

outcomes_{{ grain }} as (

    select
        {{ ops_trend_trunc_utc(grain, 'at_ts') }} as bucket_start,
        cast(sum(case when outcome = 'posted' then 1 else 0 end) as bigint) as n_posted,
        cast(sum(case when outcome = 'failed' then 1 else 0 end) as bigint) as n_failed,
        cast(sum(case when outcome = 'skipped' then 1 else 0 end) as bigint) as n_skipped,
        cast(sum(case when outcome = 'blocked' then 1 else 0 end) as bigint) as n_blocked,
        cast(sum(case when outcome = 'in_flight' then 1 else 0 end) as bigint) as n_in_flight,
        cast(sum(case when outcome = 'other' then 1 else 0 end) as bigint) as n_other,
        cast(sum(case when is_null_tweet_id then 1 else 0 end) as bigint) as n_null_tweet_id,
        cast(count(schedule_to_post_us) as bigint) as n_timed_posts,
        cast(sum(schedule_to_post_us) as double precision) as sum_schedule_to_post_us
    from windowed_outcomes
    group by {{ ops_trend_trunc_utc(grain, 'at_ts') }}

),

attempts_{{ grain }} as (

    select
        {{ ops_trend_trunc_utc(grain, 'at_ts') }} as bucket_start,
        cast(count(*) as bigint) as n_attempts,
        cast(sum(case when status = 'success' then 1 else 0 end) as bigint) as n_attempts_succeeded,
        cast(count(duration_ms) as bigint) as n_timed_attempts,
        cast(sum(duration_ms) as double precision) as sum_attempt_ms
    from windowed_attempts
    group by {{ ops_trend_trunc_utc(grain, 'at_ts') }}

),

{%- for metric, source, value in [('post', 'windowed_outcomes', 'schedule_to_post_us'),
                                       ('attempt', 'windowed_attempts', 'duration_ms * 1000')] %}
ranked_{{ metric }}_{{ grain }} as (

    select
        {{ ops_trend_trunc_utc(grain, 'at_ts') }} as bucket_start,
        {{ value }} as value_us,
        lead({{ value }}) over (
            partition by {{ ops_trend_trunc_utc(grain, 'at_ts') }}
            order by {{ value }}
        ) as next_value_us,
        row_number() over (
            partition by {{ ops_trend_trunc_utc(grain, 'at_ts') }}
            order by {{ value }}
        ) as k,
        count(*) over (partition by {{ ops_trend_trunc_utc(grain, 'at_ts') }}) as n_values
    from {{ source }}
    where {{ value }} is not null

),

pct_{{ metric }}_{{ grain }} as (

    {#- percentiles by one formula on both targets (ops_ranked_percentile) -#}
    select
        bucket_start
        {%- for q in [50, 95] %},
        {{ ops_ranked_percentile('value_us', 'next_value_us', 'k', 'n_values', '0.' ~ q) }} as p{{ q }}_us
        {%- endfor %}
    from ranked_{{ metric }}_{{ grain }}
    group by bucket_start

),

{%- endfor %}

alert_hours_{{ grain }} as (

    {#- hours over the alert threshold (the checklist's "> 5 NULL tweet ids in an hour") -#}
    select
        {{ ops_trend_trunc_utc(grain, 'bucket_start') }} as bucket_start,
        cast(sum(case when n_null_tweet_id > {{ alert_per_hour }} then 1 else 0 end) as bigint) as n_null_tweet_id_alert_hours
    from outcomes_hour
    group by {{ ops_trend_trunc_utc(grain, 'bucket_start') }}

),

dense_{{ grain }} as (

    select
        '{{ grain }}' as grain,
        buckets.bucket_start,
        buckets.bucket_end,
        buckets.n_hours,
        coalesce(created.n_created, 0) as n_created,
        coalesce(outcomes.n_posted, 0) as n_posted,
        coalesce(outcomes.n_failed, 0) as n_failed,
        coalesce(outcomes.n_skipped, 0) as n_skipped,
        coalesce(outcomes.n_blocked, 0) as n_blocked,
        coalesce(outcomes.n_in_flight, 0) as n_in_flight,
        coalesce(outcomes.n_other, 0) as n_other,
        coalesce(outcomes.n_null_tweet_id, 0) as n_null_tweet_id,
        coalesce(alert_hours.n_null_tweet_id_alert_hours, 0) as n_null_tweet_id_alert_hours,
        coalesce(outcomes.n_timed_posts, 0) as n_timed_posts,
        outcomes.sum_schedule_to_post_us,
        cast(pct_post.p50_us as double precision) as p50_schedule_to_post_us,
        cast(pct_post.p95_us as double precision) as p95_schedule_to_post_us,
        coalesce(attempts.n_attempts, 0) as n_attempts,
        coalesce(attempts.n_attempts_succeeded, 0) as n_attempts_succeeded,
        coalesce(attempts.n_timed_attempts, 0) as n_timed_attempts,
        attempts.sum_attempt_ms,
        cast(pct_attempt.p50_us as double precision) as p50_attempt_us,
        cast(pct_attempt.p95_us as double precision) as p95_attempt_us
    from buckets_{{ grain }} as buckets
    left join created_{{ grain }} as created
        on created.bucket_start = buckets.bucket_start
    left join outcomes_{{ grain }} as outcomes
        on outcomes.bucket_start = buckets.bucket_start
    left join attempts_{{ grain }} as attempts
        on attempts.bucket_start = buckets.bucket_start
    left join alert_hours_{{ grain }} as alert_hours
        on alert_hours.bucket_start = buckets.bucket_start
    left join pct_post_{{ grain }} as pct_post
        on pct_post.bucket_start = buckets.bucket_start
    left join pct_attempt_{{ grain }} as pct_attempt
        on pct_attempt.bucket_start = buckets.bucket_start

),
{%- endfor %}

unioned as (

    {%- for grain in grains %}
    select * from dense_{{ grain }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

final as (

    select
        grain,
        bucket_start,
        bucket_end,
        {#- the bucket holding as_of is not over yet: bucket_end is clipped to the data -#}
        case when grain = 'day' then {{ timestamp_add('bucket_start', 24, 'hour') }}
             else {{ timestamp_add('bucket_start', 1, 'hour') }}
        end > {{ as_of_timestamp() }} as is_partial,
        n_hours,
        n_created,
        n_posted,
        n_failed,
        n_skipped,
        n_blocked,
        n_in_flight,
        n_other,
        {{ ops_trend_ratio('n_posted', 'n_posted + n_failed + n_blocked') }} as success_rate,
        {{ ops_trend_ratio('n_posted', 'n_hours') }} as posts_per_hour,
        n_null_tweet_id,
        {{ ops_trend_ratio('n_null_tweet_id', 'n_posted') }} as null_tweet_id_rate,
        n_null_tweet_id_alert_hours,
        n_null_tweet_id_alert_hours > 0 as null_tweet_id_alert,
        n_timed_posts,
        sum_schedule_to_post_us / cast(nullif(n_timed_posts, 0) as double precision) / cast(60000000 as double precision) as avg_schedule_to_post_minutes,
        p50_schedule_to_post_us / cast(60000000 as double precision) as p50_schedule_to_post_minutes,
        p95_schedule_to_post_us / cast(60000000 as double precision) as p95_schedule_to_post_minutes,
        n_attempts,
        n_attempts_succeeded,
        n_timed_attempts,
        sum_attempt_ms / cast(nullif(n_timed_attempts, 0) as double precision) / cast(60000 as double precision) as avg_attempt_minutes,
        p50_attempt_us / cast(60000000 as double precision) as p50_attempt_minutes,
        p95_attempt_us / cast(60000000 as double precision) as p95_attempt_minutes
    from unioned

)

select * from final
