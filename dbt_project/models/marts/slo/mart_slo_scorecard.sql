{{ config(materialized='table') }}

{#-
    The checklist's success metrics, scored per ISO week (Monday, UTC) over the last
    `slo_scorecard_weeks` weeks before as_of. Targets come from the slo_targets seed; every metric
    reads a mart (or the event fact) already built, so each number here can be traced back.
    Long format: one row per week and metric. See mart_slo_scorecard.yml.
-#}

with

params as (

    select
        {{ as_of_timestamp() }} as as_of,
        {{ timestamp_add(as_of_timestamp(), -1 * var('self_healing_grace_minutes'), 'minute') }} as judged_before,
        {{ timestamp_add(as_of_timestamp(), -1 * var('breaker_reset_hold_minutes'), 'minute') }} as resets_judged_before

),

ranked_weeks as (

    select
        trends.period_start as week_start,
        trends.n_hours,
        trends.n_errors,
        trends.n_operations,
        row_number() over (order by trends.period_start desc) as weeks_back
    from {{ ref('mart_error_trends_periodic') }} as trends
    cross join params
    where trends.grain = 'week'
      and trends.dimension = 'total'
      and trends.period_start < params.as_of

),

weeks as (

    select
        week_start,
        {{ timestamp_add('week_start', 168, 'hour') }} as week_end,
        n_hours,
        n_errors,
        n_operations
    from ranked_weeks
    where weeks_back <= {{ var('slo_scorecard_weeks') }}

),

first_week as (

    select min(week_start) as first_week_start from weeks

),

-- error rate: the trend mart's weekly total

error_rate as (

    select
        week_start,
        'error_rate' as metric,
        cast(n_errors as double precision) as numerator,
        cast(n_operations as double precision) as denominator,
        n_operations as n_observations,
        case when n_operations > 0 then cast(n_errors as double precision) / n_operations end as actual_value,
        'no operation events this week' as empty_reason
    from weeks

),

-- recovery: median of the incidents that started in the week and have recovered

recovery as (

    select
        weeks.week_start,
        'recovery_minutes' as metric,
        cast(null as double precision) as numerator,
        cast(null as double precision) as denominator,
        count(incidents.started_at) as n_observations,
        {{ ops_an_percentile('incidents.recovery_minutes', 0.5) }} as actual_value,
        'no recovered error incident started this week' as empty_reason
    from weeks
    left join {{ ref('int_recovery_incidents') }} as incidents
        on incidents.started_at >= weeks.week_start
        and incidents.started_at < weeks.week_end
        and incidents.is_recovered
    group by weeks.week_start

),

shutdowns as (

    select
        weeks.week_start,
        'shutdowns_per_week' as metric,
        cast(count(episodes.episode_id) as double precision) as numerator,
        cast(null as double precision) as denominator,
        count(episodes.episode_id) as n_observations,
        cast(count(episodes.episode_id) as double precision) as actual_value,
        cast(null as {{ dbt.type_string() }}) as empty_reason
    from weeks
    left join {{ ref('mart_shutdown_episodes') }} as episodes
        on episodes.shutdown_start_at >= weeks.week_start
        and episodes.shutdown_start_at < weeks.week_end
    group by weeks.week_start

),

posting_weeks as (

    select
        weeks.week_start,
        sum(days.n_posted) as n_posted,
        sum(days.n_null_tweet_id) as n_null_tweet_id,
        sum(days.n_timed_attempts) as n_timed_attempts,
        sum(days.avg_attempt_minutes * days.n_timed_attempts) as attempt_minutes
    from weeks
    left join {{ ref('mart_posting_health_daily') }} as days
        on days.day_start >= weeks.week_start
        and days.day_start < weeks.week_end
    group by weeks.week_start

),

null_tweet_id_rate as (

    select
        week_start,
        'null_tweet_id_rate' as metric,
        cast(n_null_tweet_id as double precision) as numerator,
        cast(n_posted as double precision) as denominator,
        coalesce(n_posted, 0) as n_observations,
        case when n_posted > 0 then cast(n_null_tweet_id as double precision) / n_posted end as actual_value,
        'no decision posted this week (or the week is outside posting_health_window_days)' as empty_reason
    from posting_weeks

),

avg_post_minutes as (

    select
        week_start,
        'avg_post_minutes' as metric,
        cast(attempt_minutes as double precision) as numerator,
        cast(n_timed_attempts as double precision) as denominator,
        coalesce(n_timed_attempts, 0) as n_observations,
        case when n_timed_attempts > 0 then attempt_minutes / n_timed_attempts end as actual_value,
        'no timed posting attempt this week' as empty_reason
    from posting_weeks

),

job_overlap as (

    select
        weeks.week_start,
        'job_overlap_share' as metric,
        cast(sum(days.overlap_us) as double precision) / 60000000.0 as numerator,
        cast(sum(days.run_us) as double precision) / 60000000.0 as denominator,
        count(days.run_date) as n_observations,
        case when sum(days.run_us) > 0
            then cast(sum(days.overlap_us) as double precision) / cast(sum(days.run_us) as double precision)
        end as actual_value,
        'no job run with a known start and end this week' as empty_reason
    from weeks
    left join {{ ref('int_job_overlap_days') }} as days
        on days.run_date >= {{ to_utc_date('weeks.week_start') }}
        and days.run_date < {{ to_utc_date('weeks.week_end') }}
    group by weeks.week_start

),

-- the event fact, read once for the event-based metrics (only the scorecard's weeks)

scored_events as (

    select
        events.event_type,
        events.created_at,
        events.decision_id,
        events.reason,
        events.payload
    from {{ ref('fct_system_events') }} as events
    cross join first_week
    cross join params
    where not events.is_deleted
      and events.created_at >= first_week.first_week_start
      and events.created_at < params.as_of
      and (events.event_type in (
              'POST_ID_CAPTURE_FAILED', 'tweet_id_recovered', 'circuit_breaker_forced_reset',
              'circuit_breaker_stuck', 'circuit_breaker_watchdog_alert')
           or (events.event_type = 'POSTING_QUEUE_BLOCKED' and events.reason = 'CIRCUIT_BREAKER'))

),

pool_hours as (

    {#- the health samples of the scored weeks: whole hours before the one holding as_of from
        int_executor_health_hours (rolled up as they load), that hour's samples up to as_of one
        by one -#}
    select hour_start, n_pool_samples, pool_active_sum, pool_max_contexts_sum
    from {{ ref('int_executor_health_hours') }} as hours
    cross join first_week
    where hours.hour_start >= first_week.first_week_start
      and hours.hour_start < {{ trunc_utc_hour(as_of_timestamp()) }}

    union all

    select
        {{ trunc_utc_hour(as_of_timestamp()) }},
        count(*),
        sum(pool_active),
        sum(pool_max_contexts)
    from (
        select
            {{ safe_cast_bigint(json_text('events.payload', 'browser_pool_active')) }} as pool_active,
            {{ safe_cast_bigint(json_text('events.payload', 'browser_pool_max_contexts')) }} as pool_max_contexts
        from {{ ref('fct_system_events') }} as events
        cross join first_week
        where not events.is_deleted
          and events.event_type in ('EXECUTOR_HEALTH_OK', 'EXECUTOR_HEALTH_DEGRADED')
          and events.created_at >= {{ trunc_utc_hour(as_of_timestamp()) }}
          and events.created_at >= first_week.first_week_start
          and events.created_at < {{ as_of_timestamp() }}
    ) as samples
    where pool_active is not null
      and pool_max_contexts > 0

),

pool_weeks as (

    select
        {{ ops_trend_trunc_utc('week', 'hour_start') }} as week_start,
        sum(n_pool_samples) as n_pool_samples,
        sum(pool_active_sum) as pool_active_sum,
        sum(pool_max_contexts_sum) as pool_max_contexts_sum
    from pool_hours
    group by 1

),

browser_pool as (

    select
        weeks.week_start,
        'browser_pool_utilisation' as metric,
        cast(pool_weeks.pool_active_sum as double precision) as numerator,
        cast(pool_weeks.pool_max_contexts_sum as double precision) as denominator,
        cast(coalesce(pool_weeks.n_pool_samples, 0) as bigint) as n_observations,
        case when pool_weeks.pool_max_contexts_sum > 0
            then cast(pool_weeks.pool_active_sum as double precision) / cast(pool_weeks.pool_max_contexts_sum as double precision)
        end as actual_value,
        'no executor health sample this week carries browser_pool_active and browser_pool_max_contexts' as empty_reason
    from weeks
    left join pool_weeks
        on pool_weeks.week_start = weeks.week_start

),

-- self-healing: missing tweet ids filled later, forced breaker resets that held

filled_decisions as (

    select decision_id from scored_events where event_type = 'tweet_id_recovered' and decision_id is not null
    union
    select decision_id from {{ ref('stg_ops__decisions') }} where tweet_id is not null

),

healing_attempts as (

    select
        capture.created_at as attempted_at,
        case when filled.decision_id is not null then 1 else 0 end as healed
    from scored_events as capture
    cross join params
    left join filled_decisions as filled
        on filled.decision_id = capture.decision_id
    where capture.event_type = 'POST_ID_CAPTURE_FAILED'
      and capture.created_at < params.judged_before

    union all

    select
        resets.created_at,
        case when exists (
            select 1
            from scored_events as signals
            where (signals.event_type in ('circuit_breaker_stuck', 'circuit_breaker_watchdog_alert')
                   or signals.event_type = 'POSTING_QUEUE_BLOCKED')
              and signals.created_at > resets.created_at
              and signals.created_at <= {{ timestamp_add('resets.created_at', var('breaker_reset_hold_minutes'), 'minute') }}
        ) then 0 else 1 end
    from scored_events as resets
    cross join params
    where resets.event_type = 'circuit_breaker_forced_reset'
      and resets.created_at < params.resets_judged_before

),

self_healing as (

    select
        weeks.week_start,
        'self_healing_success' as metric,
        cast(sum(attempts.healed) as double precision) as numerator,
        cast(count(attempts.attempted_at) as double precision) as denominator,
        count(attempts.attempted_at) as n_observations,
        case when count(attempts.attempted_at) > 0
            then cast(sum(attempts.healed) as double precision) / count(attempts.attempted_at)
        end as actual_value,
        'no self-healing attempt this week (no tweet id capture failure, no forced breaker reset) old enough to judge' as empty_reason
    from weeks
    left join healing_attempts as attempts
        on attempts.attempted_at >= weeks.week_start
        and attempts.attempted_at < weeks.week_end
    group by weeks.week_start

),

measured as (

    select * from error_rate
    union all select * from recovery
    union all select * from shutdowns
    union all select * from null_tweet_id_rate
    union all select * from avg_post_minutes
    union all select * from job_overlap
    union all select * from browser_pool
    union all select * from self_healing

),

scored as (

    select
        weeks.week_start,
        weeks.week_end,
        weeks.n_hours as n_hours_observed,
        (weeks.n_hours = 168 and weeks.week_end <= params.as_of) as is_complete_week,
        targets.metric,
        targets.checklist_section,
        targets.checklist_target,
        targets.comparison,
        targets.target_value,
        targets.target_upper,
        targets.unit,
        case when targets.has_data then measured.actual_value end as actual_value,
        case when targets.has_data then measured.numerator end as numerator,
        case when targets.has_data then measured.denominator end as denominator,
        case when targets.has_data then coalesce(measured.n_observations, 0) else 0 end as n_observations,
        targets.has_data,
        measured.empty_reason,
        targets.no_data_reason as seed_no_data_reason,
        targets.how_computed
    from weeks
    cross join params
    cross join {{ ref('slo_targets') }} as targets
    left join measured
        on measured.week_start = weeks.week_start
        and measured.metric = targets.metric

)

select
    week_start,
    week_end,
    n_hours_observed,
    is_complete_week,
    metric,
    checklist_section,
    checklist_target,
    comparison,
    target_value,
    target_upper,
    unit,
    actual_value,
    numerator,
    denominator,
    cast(n_observations as bigint) as n_observations,
    case
        when not has_data or actual_value is null then 'no data'
        when comparison = 'lt' and actual_value < target_value then 'met'
        when comparison = 'le' and actual_value <= target_value then 'met'
        when comparison = 'gt' and actual_value > target_value then 'met'
        when comparison = 'ge' and actual_value >= target_value then 'met'
        when comparison = 'between' and actual_value >= target_value and actual_value <= target_upper then 'met'
        else 'missed'
    end as status,
    case
        when not has_data then seed_no_data_reason
        when actual_value is null then empty_reason
    end as no_data_reason,
    how_computed
from scored
