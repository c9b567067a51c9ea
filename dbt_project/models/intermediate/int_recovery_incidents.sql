{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook="{{ ops_postgres_plan_hints(nested_loops=false) }}",
        post_hook="{% if is_incremental() %}{{ ops_recovery_delete_replaced(this) }}{% endif %}",
    )
}}

{#-
    Error incidents and their recovery. An incident is a run of error events of one subject:
    the job for `<job>_job_execution_failed` / `<job>_consecutive_failures`, the error family
    otherwise. For subjects with a success signal the run ends at the subject's next success,
    which is its recovery:
    - jobs: a timer_fired of the job not followed by a failure of the job before its next
      firing (the run succeeded), or a last_success_at seen in job_heartbeats / its snapshots;
    - posting families: the next POST_SUCCESS (post_failed, post_failure, post_id_capture_failed,
      create_tweet_226_blocked, null_tweet_id), POST_SUCCESS or REPLY_SUCCESS
      (posting_attempt_failed), REPLY_SUCCESS (reply_failed, reply_failure).
    Other families have no success signal: a run ends when the family stays quiet for
    var('recovery_quiet_minutes', 30) minutes, and its recovery is its last error (basis
    `errors_stopped`). Incidents with no recovery by var('as_of') are kept, flagged unrecovered.

    Incremental (append + replace; macros in macros/incremental_replace.sql). The family
    horizon B = least(as_of, newest last_error_at in the table, W) where W is the oldest
    created_at among the events loaded since the table's source_loaded_through: nothing before
    B is new. Job subjects get B_job = B - var('recovery_rebuild_hours', 48) h (a firing is a
    success only once the next one is seen; heartbeats report successes late). An incident that
    recovered before its horizon — for errors_stopped runs also its last error + the quiet
    minutes — is final: later events can only start later incidents. Each subject restarts at
    P_s = least(its horizon, first started_at of its incidents not final); subjects not in the
    table at the earliest P_s of their type. A run reads the events from the earliest family
    P_s, and the job events (firings, job failures) from the earliest job P_s; it runs the
    incident logic below unchanged and keeps the incidents started at or after their subject's
    P_s. No earlier context is needed: a subject's error before P_s belongs to an incident that
    recovered before P_s (by a success or a quiet gap the window also sees), and a failure whose
    firing is before the window only makes that (unread) firing a failed one. The post-hook
    deletes the old rows (_build_id of an earlier run) from P_s on, with P_s recomputed over
    exactly those old rows, so nothing is duplicated or lost and a re-run at the same as_of
    changes nothing. open_minutes_at_as_of is set only on unrecovered incidents (they are
    always recomputed), so every row equals a full build's.
    Limits — run with --full-refresh when: job_heartbeats report a last_success_at before the
    job horizon; the quiet/success rules, the classification or the vars change; or the table
    predates this materialisation (or its source_loaded_through column).
    A job firing more than the horizon apart confirms a success only after the horizon passed:
    keep var('recovery_rebuild_hours') above the longest job interval (default 48 h).
-#}

{%- set quiet_minutes = var('recovery_quiet_minutes', 30) | int %}
{%- set success_events = {
    'post_failed': ['POST_SUCCESS'],
    'post_failure': ['POST_SUCCESS'],
    'post_id_capture_failed': ['POST_SUCCESS'],
    'create_tweet_226_blocked': ['POST_SUCCESS'],
    'null_tweet_id': ['POST_SUCCESS'],
    'posting_attempt_failed': ['POST_SUCCESS', 'REPLY_SUCCESS'],
    'reply_failed': ['REPLY_SUCCESS'],
    'reply_failure': ['REPLY_SUCCESS'],
} %}

with

events as (

    {#- only what the logic below reads: errors, job firings and the success events (the other
        ~90 % of the events would be carried through every window for nothing) -#}
    {%- set read_event_types = (['timer_fired'] + success_events.values() | sum(start=[])) | unique | list %}
    {%- set read_events %}
    select * from {{ ref('int_events_classified') }}
    where created_at <= {{ as_of_timestamp() }}
      and (
        is_error
        or error_family = 'job_execution_failed'
        or event_type in ('{{ read_event_types | join("', '") }}')
      )
    {%- endset %}
    {{ read_events }}
    {%- if is_incremental() %}
    {#- every subject's events from the earliest family restart point; the events of job subjects
        (failures, firings) also from the earliest job restart point, further back -#}
    {%- set family_from = ops_timestamp_bound(ops_recovery_restart_from(this, 'true', 'family')) %}
      and created_at >= {{ family_from }}

    union all

    {{ read_events }}
      and created_at >= {{ ops_timestamp_bound(ops_recovery_restart_from(this, 'true', 'job')) }}
      and created_at < {{ family_from }}
      and (event_type = 'timer_fired' or error_family in ('job_execution_failed', 'consecutive_failures'))
    {%- endif %}

),

heartbeats as (

    select * from {{ ref('stg_ops__job_heartbeats') }}

),

heartbeat_snapshots as (

    select * from {{ ref('stg_ops__job_heartbeat_snapshots') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

success_map as (

    {% for family, event_types in success_events.items() -%}
    {%- set outer_last = loop.last -%}
    {%- for event_type in event_types -%}
    select '{{ family }}' as subject, '{{ event_type }}' as success_event_type
    {%- if not (outer_last and loop.last) %} union all {% endif %}
    {% endfor -%}
    {%- endfor %}

),

in_range as (

    select events.*
    from events
    cross join params
    where events.created_at <= params.as_of

),

errors as (

    select
        case when family_job is not null then 'job' else 'family' end as subject_type,
        coalesce(family_job, error_family) as subject,
        event_id,
        error_family,
        created_at as event_at
    from in_range
    where is_error

),

job_timeline as (

    {#- a failure belongs to the job's latest firing at or before it -#}
    select job_name, created_at as at_, 0 as kind_order
    from in_range
    where event_type = 'timer_fired'
      and job_name is not null

    union all

    select family_job, created_at, 1
    from in_range
    where error_family = 'job_execution_failed'

),

job_attributed as (

    select
        job_name,
        at_,
        kind_order,
        max(case when kind_order = 0 then at_ end) over (
            partition by job_name
            order by at_, kind_order
            rows between unbounded preceding and current row
        ) as fired_at
    from job_timeline

),

failed_fires as (

    select distinct job_name, fired_at
    from job_attributed
    where kind_order = 1
      and fired_at is not null

),

timer_fires as (

    select
        job_name,
        at_ as fired_at,
        lead(at_) over (partition by job_name order by at_) as next_fired_at
    from job_attributed
    where kind_order = 0

),

{#- a firing followed by the next one without a failure in between: that run succeeded -#}
successful_fires as (

    select
        timer_fires.job_name,
        timer_fires.fired_at
    from timer_fires
    left join failed_fires
        on failed_fires.job_name = timer_fires.job_name
       and failed_fires.fired_at = timer_fires.fired_at
    where timer_fires.next_fired_at is not null
      and failed_fires.fired_at is null

),

successes as (

    select 'job' as subject_type, job_name as subject, fired_at as success_at
    from successful_fires

    union

    select 'job', job_name, last_success_at
    from heartbeats
    where last_success_at is not null

    union

    select 'job', job_name, last_success_at
    from heartbeat_snapshots
    where last_success_at is not null

    union

    select 'family', success_map.subject, in_range.created_at
    from in_range
    inner join success_map
        on success_map.success_event_type = in_range.event_type

),

signal_subjects as (

    select distinct subject_type, subject from errors where subject_type = 'job'
    union
    select distinct 'family', subject from success_map

),

successes_in_range as (

    select successes.*
    from successes
    cross join params
    where successes.success_at <= params.as_of

),

{#- runs ended by a success: count the subject's successes up to each error -#}
signal_timeline as (

    select subject_type, subject, event_at as at_, 1 as kind_order, event_id
    from errors
    where exists (
        select 1 from signal_subjects
        where signal_subjects.subject_type = errors.subject_type
          and signal_subjects.subject = errors.subject
    )

    union all

    select subject_type, subject, success_at, 0, cast(null as {{ dbt.type_string() }})
    from successes_in_range

),

signal_runs as (

    select
        subject_type,
        subject,
        at_ as event_at,
        event_id,
        kind_order,
        sum(case when kind_order = 0 then 1 else 0 end) over (
            partition by subject_type, subject
            order by at_, kind_order
            rows between unbounded preceding and current row
        ) as run_key
    from signal_timeline

),

signal_incidents as (

    select
        subject_type,
        subject,
        run_key,
        min(event_at) as started_at,
        max(event_at) as last_error_at,
        count(*) as n_errors,
        'next_success' as recovery_basis
    from signal_runs
    where kind_order = 1
    group by subject_type, subject, run_key

),

{#- the success that ends run k is the first row of run k + 1 -#}
run_openers as (

    select
        subject_type,
        subject,
        run_key,
        min(event_at) as success_at
    from signal_runs
    where kind_order = 0
    group by subject_type, subject, run_key

),

signal_recovered as (

    select
        signal_incidents.subject_type,
        signal_incidents.subject,
        signal_incidents.started_at,
        signal_incidents.last_error_at,
        signal_incidents.n_errors,
        signal_incidents.recovery_basis,
        run_openers.success_at as recovered_at
    from signal_incidents
    left join run_openers
        on run_openers.subject_type = signal_incidents.subject_type
       and run_openers.subject = signal_incidents.subject
       and run_openers.run_key = signal_incidents.run_key + 1

),

{#- runs of families without a success signal: split by quiet gaps -#}
quiet_errors as (

    select
        errors.subject_type,
        errors.subject,
        errors.event_at,
        case
            when lag(errors.event_at) over (
                partition by errors.subject_type, errors.subject order by errors.event_at, errors.event_id
            ) is null then 1
            when {{ ops_an_minutes_between(
                'lag(errors.event_at) over (partition by errors.subject_type, errors.subject order by errors.event_at, errors.event_id)',
                'errors.event_at') }} > {{ quiet_minutes }} then 1
            else 0
        end as is_new_run
    from errors
    where not exists (
        select 1 from signal_subjects
        where signal_subjects.subject_type = errors.subject_type
          and signal_subjects.subject = errors.subject
    )

),

quiet_runs as (

    select
        subject_type,
        subject,
        event_at,
        sum(is_new_run) over (
            partition by subject_type, subject
            order by event_at, is_new_run desc
            rows between unbounded preceding and current row
        ) as run_key
    from quiet_errors

),

quiet_incidents as (

    select
        quiet_runs.subject_type,
        quiet_runs.subject,
        min(quiet_runs.event_at) as started_at,
        max(quiet_runs.event_at) as last_error_at,
        count(*) as n_errors,
        'errors_stopped' as recovery_basis,
        case
            when {{ ops_an_minutes_between('max(quiet_runs.event_at)', 'max(params.as_of)') }} >= {{ quiet_minutes }}
            then max(quiet_runs.event_at)
        end as recovered_at
    from quiet_runs
    cross join params
    group by quiet_runs.subject_type, quiet_runs.subject, quiet_runs.run_key

),

incidents as (

    select * from signal_recovered
    union all
    select subject_type, subject, started_at, last_error_at, n_errors, recovery_basis, recovered_at
    from quiet_incidents

),

final as (

    select
        {{ surrogate_key(['incidents.subject_type', 'incidents.subject', 'incidents.started_at']) }} as incident_id,
        incidents.subject_type,
        incidents.subject,
        incidents.started_at,
        incidents.last_error_at,
        incidents.n_errors,
        incidents.recovery_basis,
        incidents.recovered_at,
        incidents.recovered_at is not null as is_recovered,
        {{ ops_an_minutes_between('incidents.started_at', 'incidents.recovered_at') }} as recovery_minutes,
        case
            when incidents.recovered_at is null
            then {{ ops_an_minutes_between('incidents.started_at', 'params.as_of') }}
        end as open_minutes_at_as_of,
        cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as _build_id,
        stamped.source_loaded_through
    from incidents
    cross join params
    cross join (
        select max(_loaded_at) as source_loaded_through
        from {{ ref('fct_system_events') }}
    ) as stamped
    {%- if is_incremental() %}
    {#- keep what this run replaces: the subject's incidents from its restart point on #}
    left join ({{ ops_recovery_restart_points(this, 'true') }}) as restart_points
        on restart_points.subject_type = incidents.subject_type
       and restart_points.subject = incidents.subject
    where incidents.started_at >= coalesce(
        restart_points.restart_at,
        case
            when incidents.subject_type = 'job' then {{ ops_recovery_restart_from(this, 'true', 'job') }}
            else {{ ops_recovery_restart_from(this, 'true', 'family') }}
        end
    )
    {%- endif %}

)

select * from final
