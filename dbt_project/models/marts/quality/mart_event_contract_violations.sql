{#-
    The event payload contract (seeds/event_contracts.csv) checked on the events of the last
    var('contract_window_days', 7) days before as_of: per family × writer × payload column ×
    rule × required field, how many events were checked and how many lacked the field.

    Each event is judged by one rule: the matching rule with the lowest priority (ties: lowest
    rule_id). A required field is present when its parsed fct_system_events column is not NULL
    (the staging view cleans blanks to NULL). A required_field this model does not know counts
    as missing everywhere, so a typo in the seed shows up as violations instead of passing.

    The whole hours of the window come summed from int_contract_hours (judged as they load);
    the two hours its ends cut are judged here event by event (macros/contracts.sql, the same
    code), so a run reads those hours' events, not seven days of them.

    "Writer": the source has no writer column. The closest honest proxy, in order: the component
    (the component column, or the payload component ErrorTracker events carry) → 'component:<c>';
    else the job (the <job>_ prefix of job failure types, or payload job_name) → 'job:<j>'; else
    the event type itself → 'event_type:<type>'. payload_column (event_data / metadata / none)
    is part of the grain: an older writer puts its payload under metadata.
-#}

{%- set window_days = var('contract_window_days', 7) | int -%}
{%- set window_start = timestamp_add(as_of_timestamp(), -24 * window_days, 'hour') -%}
{%- set first_hour = trunc_utc_hour(window_start) -%}
{%- set last_hour = trunc_utc_hour(as_of_timestamp()) -%}

with

cut_hour_events as (

    {{ ops_contract_events(
        "((fct.created_at >= " ~ first_hour ~ " and fct.created_at < " ~ timestamp_add(first_hour, 1, 'hour') ~ ")"
        ~ " or (fct.created_at >= " ~ last_hour ~ " and fct.created_at < " ~ timestamp_add(last_hour, 1, 'hour') ~ "))"
        ~ " and fct.created_at > " ~ window_start ~ " and fct.created_at <= " ~ as_of_timestamp()) }}

),

cut_hours_judged as (

    {{ ops_contract_judged('cut_hour_events') }}

),

pieces as (

    {#- whole hours inside the window from the hourly aggregate; the cut hours one event each -#}
    select
        family, writer, payload_column, rule_id, required_field, event_type,
        n_events, n_violations, first_violation_at, last_violation_at, example_event_id
    from {{ ref('int_contract_hours') }}
    where family is not null
      and hour_start > {{ first_hour }}
      and hour_start < {{ last_hour }}

    union all

    select
        family, writer, payload_column, rule_id, required_field, event_type,
        1, is_missing,
        case when is_missing = 1 then created_at end,
        case when is_missing = 1 then created_at end,
        case when is_missing = 1 then event_id end
    from cut_hours_judged

),

examples as (

    select
        family,
        writer,
        payload_column,
        rule_id,
        required_field,
        example_event_id,
        event_type as example_event_type
    from (
        select
            pieces.*,
            row_number() over (
                partition by family, writer, payload_column, rule_id, required_field
                order by last_violation_at desc, example_event_id desc
            ) as example_rank
        from pieces
        where n_violations > 0
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
        {{ window_start }} as window_start,
        {{ as_of_timestamp() }} as window_end,
        cast(sum(n_events) as bigint) as n_events,
        sum(n_violations) as n_violations,
        count(distinct event_type) as n_event_types,
        min(first_violation_at) as first_violation_at,
        max(last_violation_at) as last_violation_at
    from pieces
    group by family, writer, payload_column, rule_id, required_field

),

contracts as (

    select * from {{ ref('event_contracts') }}

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
