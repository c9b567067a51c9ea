{#-
    One row per decision that exists in the source: its outcome class (from its current status)
    and when that status was reached, dated by the best evidence there is (outcome_dated_by):
    1. posted_at (posts), else the event that caused the status — the latest of the status's
       causing events (below), created at or before as_of;
    2. else when the warehouse observed the change: the first snapshot of the decision's final
       run of consecutive snapshots in its current status, unless that run starts at the
       decision's first sight (change_type 'inserted': the status was reached before, when is
       unknown);
    3. else greatest(created_at, updated_at): history loaded before the warehouse watched.
    updated_at is only the last resort: the bot's status updates mostly leave it stale.
    Only events created from (window start - posting_outcome_event_margin_days) to as_of are
    read, so the hourly rebuild of the posting marts costs the same whatever the history.
    See int_decision_outcomes.yml.
-#}

{%- set window_days = var('posting_health_window_days', 60) | int %}
{%- set margin_days = var('posting_outcome_event_margin_days', 2) | int %}

{#- the events that cause each status, as the bot's writers emit them (payload decision_id);
    blocked_permanent: a non-retryable POST_FAILED (e.g. DuplicateContentError) sets it -#}
{%- set failure_events = ['POST_FAILED', 'REPLY_FAILED', 'posting_attempt_failed'] %}
{%- set causing_events = {
    'posted': ['POST_SUCCESS', 'REPLY_SUCCESS', 'tweet_id_recovered'],
    'failed': failure_events + ['stuck_post_reset'],
    'blocked': ['CREATE_TWEET_226_BLOCKED'],
    'blocked_permanent': ['CREATE_TWEET_226_BLOCKED'] + failure_events,
    'skipped': ['decision_cancelled'],
    'in_flight': ['posting_attempt_started', 'POST_ATTEMPT'],
} %}
{%- set all_causing_events = causing_events.values() | sum(start=[]) | unique | list | sort %}

with

decisions as (

    select * from {{ ref('stg_ops__decisions') }}

),

events as (

    select * from {{ ref('fct_system_events') }}

),

snapshots as (

    select * from {{ ref('stg_ops__decision_snapshots') }}

),

params as (

    select
        {{ timestamp_add(as_of_timestamp(), -24 * (window_days + margin_days), 'hour') }} as events_from,
        {{ as_of_timestamp() }} as as_of

),

classified as (

    select
        decision_id,
        decision_type,
        status,
        case
            when status = 'posted' then 'posted'
            when status = 'archived' and posted_at is not null then 'posted'
            when status in ('failed', 'failed_permanent') then 'failed'
            when status in ('skipped', 'cancelled') then 'skipped'
            when status = 'archived' and skip_reason is not null then 'skipped'
            when status in ('blocked', 'blocked_permanent') then 'blocked'
            when status in ('queued', 'posting', 'posting_attempt') then 'in_flight'
            else 'other'
        end as outcome,
        tweet_id,
        is_test_post,
        scheduled_at,
        posted_at,
        created_at,
        updated_at
    from decisions

),

with_event_rule as (

    {#- which causing events date the current status (an archived decision: those of the
        class it maps to) -#}
    select
        *,
        (outcome = 'posted' and tweet_id is null) as is_null_tweet_id,
        case
            when outcome = 'posted' then 'posted'
            when status in ('failed', 'failed_permanent') then 'failed'
            when status = 'blocked' then 'blocked'
            when status = 'blocked_permanent' then 'blocked_permanent'
            when outcome = 'skipped' then 'skipped'
            when outcome = 'in_flight' then 'in_flight'
        end as event_rule
    from classified

),

outcome_events as (

    select
        decision_id,
        event_type,
        created_at
    from events
    where not is_deleted
      and decision_id is not null
      and event_type in ({% for t in all_causing_events %}'{{ t }}'{% if not loop.last %}, {% endif %}{% endfor %})
      and created_at >= (select events_from from params)
      and created_at <= (select as_of from params)

),

decision_events as (

    select
        decision_id
        {%- for rule, types in causing_events.items() %},
        max(case when event_type in ({% for t in types %}'{{ t }}'{% if not loop.last %}, {% endif %}{% endfor %})
            then created_at end) as last_{{ rule }}_event_at
        {%- endfor %}
    from outcome_events
    group by decision_id

),

observed as (

    {#- the decision's observed states up to as_of; a 'deleted' observation says the row
        vanished, not that its status changed, so it neither starts nor ends a run -#}
    select
        snapshots.decision_id,
        snapshots.observed_at,
        snapshots.change_type,
        snapshots.status is not distinct from decisions.status as is_current_status
    from snapshots
    inner join decisions
        on decisions.decision_id = snapshots.decision_id
    where snapshots.observed_at <= (select as_of from params)
      and snapshots.change_type <> 'deleted'

),

sequenced as (

    select
        decision_id,
        observed_at,
        change_type,
        is_current_status,
        lag(is_current_status, 1, false) over (
            partition by decision_id order by observed_at
        ) as follows_current_status,
        row_number() over (partition by decision_id order by observed_at desc) as recency
    from observed

),

final_runs as (

    {#- the start of the last run of consecutive snapshots in the current status, if the
        latest snapshot is in it (else the change to it was never observed) -#}
    select
        decision_id,
        max(case when is_current_status and not follows_current_status then observed_at end) as run_started_at,
        max(case when recency = 1 and is_current_status then 1 else 0 end) = 1 as ends_in_current_status
    from sequenced
    group by decision_id

),

observed_changes as (

    select
        final_runs.decision_id,
        final_runs.run_started_at as observed_change_at
    from final_runs
    inner join sequenced
        on sequenced.decision_id = final_runs.decision_id
        and sequenced.observed_at = final_runs.run_started_at
    where final_runs.ends_in_current_status
      {# first sight says only that the status was reached before it #}
      and sequenced.change_type <> 'inserted'

),

evidence as (

    select
        with_event_rule.*,
        case with_event_rule.event_rule
            {%- for rule in causing_events %}
            when '{{ rule }}' then decision_events.last_{{ rule }}_event_at
            {%- endfor %}
        end as outcome_event_at,
        observed_changes.observed_change_at,
        {# the one remaining use of updated_at: no event and no observed change (history loaded
           before the warehouse watched); greatest ignores a NULL on both targets #}
        greatest(with_event_rule.created_at, with_event_rule.updated_at) as created_or_updated_at
    from with_event_rule
    left join decision_events
        on decision_events.decision_id = with_event_rule.decision_id
    left join observed_changes
        on observed_changes.decision_id = with_event_rule.decision_id

),

dated as (

    select
        *,
        case
            when outcome = 'posted' and posted_at is not null then 'posted_at'
            when outcome_event_at is not null then 'event'
            when observed_change_at is not null then 'snapshot'
            when created_or_updated_at is not null then 'created_or_updated_at'
        end as outcome_dated_by
    from evidence

),

final as (

    select
        decision_id,
        decision_type,
        status,
        outcome,
        case outcome_dated_by
            when 'posted_at' then posted_at
            when 'event' then outcome_event_at
            when 'snapshot' then observed_change_at
            when 'created_or_updated_at' then created_or_updated_at
        end as outcome_at,
        outcome_dated_by,
        tweet_id,
        is_null_tweet_id,
        is_test_post,
        scheduled_at,
        posted_at,
        created_at,
        updated_at
    from dated

)

select * from final
