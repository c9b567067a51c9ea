{#-
    Posting health per UTC hour over the last var('posting_health_window_days', 60) days before
    as_of, dense (a hour with nothing is a row of zeros). Computed in int_posting_health_buckets;
    see mart_posting_health_hourly.yml.
-#}

{%- set avg_target = var('posting_avg_post_minutes_target', 2) %}

with

buckets as (

    select * from {{ ref('int_posting_health_buckets') }}
    where grain = 'hour'

),

final as (

    select
        bucket_start as hour_start,
        bucket_end as hour_end,
        is_partial,
        n_created,
        n_posted,
        n_failed,
        n_skipped,
        n_blocked,
        n_in_flight,
        n_other,
        success_rate,
        posts_per_hour,
        n_null_tweet_id,
        null_tweet_id_rate,
        null_tweet_id_alert,
        n_timed_posts,
        avg_schedule_to_post_minutes,
        p50_schedule_to_post_minutes,
        p95_schedule_to_post_minutes,
        n_attempts,
        n_attempts_succeeded,
        n_timed_attempts,
        avg_attempt_minutes,
        p50_attempt_minutes,
        p95_attempt_minutes,
        avg_attempt_minutes < {{ avg_target }} as avg_attempt_within_target
    from buckets

)

select * from final
