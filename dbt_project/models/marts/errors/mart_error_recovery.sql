{#-
    Error recovery time per subject (job or error family), against the checklist's target
    ("error recovery time < 5 minutes", var('recovery_target_minutes')). Unrecovered incidents
    count in n_incidents and against the target share; percentiles are over recovered ones.
-#}

{%- set target_minutes = var('recovery_target_minutes', 5) %}

with

incidents as (

    select * from {{ ref('int_recovery_incidents') }}

),

final as (

    select
        subject_type,
        subject,
        recovery_basis,
        count(*) as n_incidents,
        cast(sum(n_errors) as bigint) as n_errors,
        count(case when is_recovered then 1 end) as n_recovered,
        count(case when not is_recovered then 1 end) as n_unrecovered,
        {{ ops_an_percentile('recovery_minutes', 0.5) }} as p50_recovery_minutes,
        {{ ops_an_percentile('recovery_minutes', 0.9) }} as p90_recovery_minutes,
        max(recovery_minutes) as max_recovery_minutes,
        cast({{ target_minutes }} as double precision) as target_minutes,
        cast(count(case when is_recovered and recovery_minutes <= {{ target_minutes }} then 1 end) as double precision)
            / count(*) as share_within_target,
        max(case when not is_recovered then open_minutes_at_as_of end) as longest_open_minutes,
        min(started_at) as first_incident_at,
        max(started_at) as last_incident_at
    from incidents
    group by subject_type, subject, recovery_basis

)

select * from final
