{#
    The event payload contract (seeds/event_contracts.csv) applied to events, shared by
    int_contract_hours (hour by hour, as events load) and mart_event_contract_violations (the
    hours its window cuts). The fields a required_field may name, and:

    ops_contract_events(where): fct_system_events rows (not deleted) matching `where`, with the
    fields, event_type_lc, writer and payload_column. "Writer": the source has no writer column;
    the closest honest proxy, in order: the component (the component column, or the payload
    component ErrorTracker events carry) → 'component:<c>'; else the job (the <job>_ prefix of
    job failure types, or payload job_name) → 'job:<j>'; else 'event_type:<type>'.

    ops_contract_judged(events): one row per event × required field of the one rule that judges
    it — the matching rule with the lowest priority (ties: lowest rule_id) — with is_missing
    (1 when the parsed column is NULL; a required_field this macro does not know counts as
    missing everywhere, so a typo in the seed shows up instead of passing). `events` is a
    relation or CTE with the columns of ops_contract_events.
#}

{% macro ops_contract_known_fields() -%}
    {{ return(['job_name', 'decision_id', 'error_code', 'error_type', 'error_text', 'component', 'reason',
               'tweet_id', 'target_tweet_id', 'operation', 'stack', 'message', 'event_timestamp']) }}
{%- endmacro %}


{% macro ops_contract_events(where) -%}
    select
        fct.event_id,
        fct.event_type,
        lower(fct.event_type) as event_type_lc,
        fct.created_at,
        fct.created_hour,
        {%- for field in ops_contract_known_fields() %}
        fct.{{ field }},
        {%- endfor %}
        case
            when fct.component is not null then 'component:' || fct.component
            when fct.job_name is not null then 'job:' || fct.job_name
            else 'event_type:' || fct.event_type
        end as writer,
        coalesce(fct.payload_column, 'none') as payload_column
    from {{ ref('fct_system_events') }} as fct
    where not fct.is_deleted
      and ({{ where }})
{%- endmacro %}


{% macro ops_contract_judged(events) -%}
    select
        matched.event_id,
        matched.event_type,
        matched.created_at,
        matched.created_hour,
        matched.writer,
        matched.payload_column,
        matched.family,
        matched.rule_id,
        contracts.required_field,
        case
            {%- for field in ops_contract_known_fields() %}
            when contracts.required_field = '{{ field }}'
                then case when matched.{{ field }} is null then 1 else 0 end
            {%- endfor %}
            else 1
        end as is_missing
    from (
        select
            events.*,
            matchers.rule_id,
            matchers.family,
            row_number() over (
                partition by events.event_id
                order by matchers.priority, matchers.rule_id
            ) as match_rank
        from {{ events }} as events
        inner join (
            select distinct rule_id, family, match_type, event_type_pattern, priority
            from {{ ref('event_contracts') }}
        ) as matchers
            on (matchers.match_type = 'exact'
                and events.event_type_lc = matchers.event_type_pattern)
            or (matchers.match_type = 'prefix'
                and left(events.event_type_lc, length(matchers.event_type_pattern)) = matchers.event_type_pattern)
            or (matchers.match_type = 'suffix'
                and right(events.event_type_lc, length(matchers.event_type_pattern)) = matchers.event_type_pattern)
    ) as matched
    inner join {{ ref('event_contracts') }} as contracts
        on matched.rule_id = contracts.rule_id
    where matched.match_rank = 1
{%- endmacro %}
