{#-
    The error events every error mart starts from: events still present in the source whose
    normalised severity is error or critical, with the checklist's own (raw severity) flag.
-#}

with

events as (

    select * from {{ ref('fct_system_events') }}

),

final as (

    select
        event_id,
        event_type,
        created_at,
        created_date,
        created_hour,
        severity,
        severity_raw,
        coalesce(severity_raw in ('error', 'critical'), false) as is_checklist_error,
        component,
        job_name,
        message,
        error_text,
        error_type,
        error_code,
        stack,
        decision_id,
        tweet_id
    from events
    where not is_deleted
      and severity in ('error', 'critical')

)

select * from final
