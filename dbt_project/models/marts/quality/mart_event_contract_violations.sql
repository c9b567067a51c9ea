{#-
    The event payload contract (seeds/event_contracts.csv) checked on the events of the last
    var('contract_window_days', 7) days before as_of: per family × writer × payload column ×
    rule × required field, how many events were checked and how many lacked the field.

    Each event is judged by one rule: the matching rule with the lowest priority (ties: lowest
    rule_id). A required field is present when its parsed fct_system_events column is not NULL
    (the staging view cleans blanks to NULL). A required_field this model does not know counts
    as missing everywhere, so a typo in the seed shows up as violations instead of passing.

    "Writer": the source has no writer column. The closest honest proxy, in order: the component
    (the component column, or the payload component ErrorTracker events carry) → 'component:<c>';
    else the job (the <job>_ prefix of job failure types, or payload job_name) → 'job:<j>'; else
    the event type itself → 'event_type:<type>'. payload_column (event_data / metadata / none)
    is part of the grain: an older writer puts its payload under metadata.
-#}

{%- set known_fields = [
    'job_name', 'decision_id', 'error_code', 'error_type', 'error_text', 'component', 'reason',
    'tweet_id', 'target_tweet_id', 'operation', 'stack', 'message', 'event_timestamp',
] -%}
{%- set window_days = var('contract_window_days', 7) | int -%}

with

contracts as (

    select * from {{ ref('event_contracts') }}

),

matchers as (

    select distinct
        rule_id,
        family,
        match_type,
        event_type_pattern,
        priority
    from contracts

),

params as (

    select
        {{ timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') }} as window_start,
        {{ as_of_timestamp() }} as window_end

),

events as (

    select
        fct.event_id,
        fct.event_type,
        lower(fct.event_type) as event_type_lc,
        fct.created_at,
        {%- for field in known_fields %}
        fct.{{ field }},
        {%- endfor %}
        case
            when fct.component is not null then 'component:' || fct.component
            when fct.job_name is not null then 'job:' || fct.job_name
            else 'event_type:' || fct.event_type
        end as writer,
        coalesce(fct.payload_column, 'none') as payload_column,
        params.window_start,
        params.window_end
    from {{ ref('fct_system_events') }} as fct
    cross join params
    where not fct.is_deleted
      and fct.created_at > params.window_start
      and fct.created_at <= params.window_end

),

matched as (

    select
        events.*,
        matchers.rule_id,
        matchers.family,
        row_number() over (
            partition by events.event_id
            order by matchers.priority, matchers.rule_id
        ) as match_rank
    from events
    inner join matchers
        on (matchers.match_type = 'exact'
            and events.event_type_lc = matchers.event_type_pattern)
        or (matchers.match_type = 'prefix'
            and left(events.event_type_lc, length(matchers.event_type_pattern)) = matchers.event_type_pattern)
        or (matchers.match_type = 'suffix'
            and right(events.event_type_lc, length(matchers.event_type_pattern)) = matchers.event_type_pattern)

),

judged as (

    select
        matched.event_id,
        matched.event_type,
        matched.created_at,
        matched.writer,
        matched.payload_column,
        matched.window_start,
        matched.window_end,
        matched.family,
        matched.rule_id,
        contracts.required_field,
        case
            {%- for field in known_fields %}
            when contracts.required_field = '{{ field }}'
                then case when matched.{{ field }} is null then 1 else 0 end
            {%- endfor %}
            else 1
        end as is_missing
    from matched
    inner join contracts
        on matched.rule_id = contracts.rule_id
    where matched.match_rank = 1

),

examples as (

    select
        family,
        writer,
        payload_column,
        rule_id,
        required_field,
        event_id as example_event_id,
        event_type as example_event_type
    from (
        select
            judged.*,
            row_number() over (
                partition by family, writer, payload_column, rule_id, required_field
                order by created_at desc, event_id desc
            ) as example_rank
        from judged
        where is_missing = 1
    ) ranked
    where example_rank = 1

),

aggregated as (

    select
        family,
        writer,
        payload_column,
        rule_id,
        required_field,
        min(window_start) as window_start,
        min(window_end) as window_end,
        count(*) as n_events,
        sum(is_missing) as n_violations,
        count(distinct event_type) as n_event_types,
        min(case when is_missing = 1 then created_at end) as first_violation_at,
        max(case when is_missing = 1 then created_at end) as last_violation_at
    from judged
    group by family, writer, payload_column, rule_id, required_field

),

rules as (

    select distinct
        rule_id,
        match_type,
        event_type_pattern,
        required_field,
        why
    from contracts

),

final as (

    select
        aggregated.window_start,
        aggregated.window_end,
        aggregated.family,
        aggregated.writer,
        aggregated.payload_column,
        aggregated.rule_id,
        rules.match_type,
        rules.event_type_pattern,
        aggregated.required_field,
        aggregated.n_events,
        cast(aggregated.n_violations as bigint) as n_violations,
        cast(aggregated.n_violations as double precision)
            / cast(aggregated.n_events as double precision) as violation_rate,
        aggregated.n_violations > 0 as is_violated,
        aggregated.n_event_types,
        aggregated.first_violation_at,
        aggregated.last_violation_at,
        examples.example_event_id,
        examples.example_event_type,
        rules.why
    from aggregated
    inner join rules
        on aggregated.rule_id = rules.rule_id
        and aggregated.required_field = rules.required_field
    left join examples
        on aggregated.family = examples.family
        and aggregated.writer = examples.writer
        and aggregated.payload_column = examples.payload_column
        and aggregated.rule_id = examples.rule_id
        and aggregated.required_field = examples.required_field

)

select * from final
