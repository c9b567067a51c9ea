{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="delete from {{ this }} where is_deleted",
        indexes=(
            [
                {'columns': ['event_id'], 'unique': True},
                {'columns': ['created_at']},
                {'columns': ['is_deleted']},
                {'columns': ['event_type']},
                {'columns': ['error_family']},
            ] if target.type == 'postgres' else []
        ),
    )
}}

{#-
    Every non-deleted event, classified: error family (parameterised types folded), error
    category (seed error_category_map: error_code, family and message rules, lowest priority
    wins), component, is_error and is_operation. See int_events_classified.yml for the rules.

    Incremental like fct_system_events, on the extractor's watermark: a run classifies the fct
    rows loaded after max(_loaded_at) (minus var('fct_lookback_hours'), default 0) and merges them on event_id
    (delete+insert); a row newly marked deleted replaces its old version and the post-hook
    removes it, so the table holds exactly the non-deleted events. After editing the seed,
    run with --full-refresh to reclassify the history.
-#}

with

events as (

    select * from {{ ref('fct_system_events') }}

    {{ loaded_since_watermark() }}

),

rules as (

    select * from {{ ref('error_category_map') }}

),

typed as (

    select
        events.*,
        lower(event_type) as event_type_lc
    from events

),

folded as (

    select
        event_id,
        event_type,
        created_at,
        created_hour,
        severity,
        severity_raw,
        component as component_raw,
        coalesce(job_name, {{ ops_trend_job_from_event_type('event_type_lc') }}) as job_name,
        {{ ops_trend_job_from_event_type('event_type_lc') }} as family_job,
        message,
        error_text,
        error_code,
        reason,
        is_deleted,
        _loaded_at,
        {{ ops_trend_error_family('event_type_lc') }} as error_family,
        length(event_type_lc) > 6 and left(event_type_lc, 6) = 'error_' as is_error_tracker
    from typed

),

flagged as (

    select
        folded.*,
        (
            severity in ('error', 'critical')
            or is_error_tracker
            or (severity not in ('info', 'warning') and {{ ops_trend_is_errorish_family('error_family') }})
        ) as is_error,
        event_type in {{ ops_trend_operation_types_sql() }} as is_operation
    from folded

),

{#- The rules as small relations. Never a join of every event with every rule (a nested loop
    of events x rules): error_code and family rules are exact, so they are hash joins; message
    rules are joined to the error events only. A rule's sort key is its
    zero-padded priority, then its rule_id; the smallest key of the matching rules wins. -#}
ranked_rules as (

    select
        rules.*,
        lpad(cast(priority as {{ dbt.type_string() }}), 6, '0') || '|' || rule_id as sort_key
    from rules

),

code_rules as (

    select pattern, sort_key from ranked_rules
    where match_field = 'error_code' and match_type = 'exact'

),

family_exact_rules as (

    select pattern, sort_key from ranked_rules
    where match_field = 'family' and match_type = 'exact'

),

message_rules as (

    select match_type, pattern, sort_key from ranked_rules
    where match_field = 'message'

),

error_texts as {% if target.type == 'postgres' %}materialized {% endif %}(

    {#- the error events' lower-cased text, computed once; materialized on PostgreSQL so the
        nested loop below scans these few rows, not every event once per rule -#}
    select
        event_id,
        lower(coalesce(error_text, '') || ' ' || coalesce(message, '')) as match_text
    from flagged
    where is_error
      and not is_deleted

),

message_matches as (

    {#- error events only: a small nested loop (errors x message rules) -#}
    select
        error_texts.event_id,
        min(message_rules.sort_key) as message_key
    from error_texts
    inner join message_rules
        on {{ ops_trend_rule_matches('message_rules', 'error_texts.match_text') }}
    group by error_texts.event_id

),

candidates as (

    select
        flagged.*,
        code_rules.sort_key as code_key,
        family_exact_rules.sort_key as family_exact_key,
        message_matches.message_key
    from flagged
    left join code_rules
        on lower(flagged.error_code) = code_rules.pattern
    left join family_exact_rules
        on flagged.error_family = family_exact_rules.pattern
    left join message_matches
        on flagged.event_id = message_matches.event_id

),

best as (

    select
        candidates.*,
        nullif(
            least(
                coalesce(code_key, '999999'),
                coalesce(family_exact_key, '999999'),
                coalesce(message_key, '999999')
            ),
            '999999'
        ) as best_key
    from candidates

),

family_component as (

    select
        pattern as error_family,
        min(component) as family_component
    from rules
    where match_field = 'family'
      and match_type = 'exact'
      and component is not null
    group by pattern

),

final as (

    select
        flagged.event_id,
        flagged.event_type,
        flagged.created_at,
        flagged.created_hour,
        flagged.error_family,
        coalesce(matched.error_category, 'other') as error_category,
        matched.rule_id as category_rule_id,
        flagged.severity,
        flagged.severity_raw,
        coalesce(
            flagged.component_raw,
            family_component.family_component,
            flagged.job_name,
            'unknown'
        ) as component,
        flagged.job_name,
        flagged.family_job,
        flagged.is_error,
        flagged.is_operation,
        flagged.message,
        flagged.error_text,
        flagged.error_code,
        flagged.reason,
        flagged.is_deleted,
        flagged._loaded_at
    from best as flagged
    left join ranked_rules as matched
        on flagged.best_key = matched.sort_key
    left join family_component
        on flagged.error_family = family_component.error_family

)

select * from final
{#- a full build skips deleted events; an incremental batch keeps them so that delete+insert
    replaces their old version, and the post-hook then removes them -#}
{%- if not is_incremental() %}
where not is_deleted
{%- endif %}
