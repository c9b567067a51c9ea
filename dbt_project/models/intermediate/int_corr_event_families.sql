{#-
    Every event still present in the source, with its error family (a stand-in for the coming
    classification model): `<job>_job_execution_failed` → job_execution_failed,
    `<job>_consecutive_failures` → consecutive_failures, `error_<type>` → <type>, else the
    lower-cased event_type. is_error = normalised severity error or critical.
-#}

with

events as (

    select * from {{ ref('fct_system_events') }}

),

final as (

    select
        event_id,
        event_type,
        {{ ops_an_event_family('event_type') }} as event_family,
        {{ ops_an_event_job('event_type') }} as family_job,
        created_at,
        created_hour,
        severity,
        coalesce(is_error, false) as is_error,
        job_name,
        reason,
        component
    from events
    where not is_deleted

)

select * from final
