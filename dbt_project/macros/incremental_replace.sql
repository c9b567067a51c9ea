{#
    Restart points of the incremental int_recovery_incidents, computed from its own rows.

    `relation` is the model's table and `old_rows` a boolean SQL condition selecting the rows of
    the previous state (the model passes `true` — it reads the table before its new rows are
    inserted; the post-hook passes `_build_id <> invocation_id`), so model and hook agree.

    Family horizon B = least(as_of, max(last_error_at) of the old rows, W), where W is the oldest
    created_at among the fct_system_events rows loaded (or marked deleted) after the newest
    source_loaded_through of the old rows — the first moment any new information is about.
    max(last_error_at) is at or before the as_of of the build that wrote the rows, so events
    loaded earlier but past that as_of are covered too. B is 1970 (recompute everything) when the
    table is empty. Nothing a run reads before B is new, so it is driven by what was loaded, not
    by a fixed number of hours: an hourly run of a dense history rebuilds about an hour.

    Job horizon B_job = B − var('recovery_rebuild_hours', 48) h: a job's firing counts as a
    success only once its next firing is seen, so a firing before W can still turn into a
    success (and split an incident that recovered later) when its next firing arrives; and a
    job_heartbeats last_success_at can report a success before W. Keep the var above the longest
    interval between two firings of a job.

    An incident is *closed before h* (h = its subject type's horizon) when it recovered before h
    and, for errors_stopped runs, its last error + var('recovery_quiet_minutes') is before h too
    (no later error can join it). Closed incidents are final. A subject restarts at
    P_s = least(h, first started_at of its incidents that are not closed before h); every
    incident of the subject from P_s on is recomputed and replaced.
#}

{% macro ops_recovery_horizons(relation, old_rows) -%}
    {%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') -%}
    {%- set loaded_since = ops_oldest_created_at_loaded_after(
            ref('fct_system_events'),
            'select coalesce(max(watermark_rows.source_loaded_through), ' ~ epoch ~ ') from ' ~ relation
            ~ ' as watermark_rows where ' ~ old_rows) -%}
    select
        family_horizon_at,
        {{ timestamp_add('family_horizon_at', -(var('recovery_rebuild_hours', 48) | int), 'hour') }} as job_horizon_at
    from (
        select case
            when count(*) = 0 then {{ epoch }}
            else least({{ as_of_timestamp() }}, max(horizon_rows.last_error_at),
                       coalesce({{ loaded_since }}, {{ as_of_timestamp() }}))
        end as family_horizon_at
        from {{ relation }} as horizon_rows
        where {{ old_rows }}
    ) as family_horizon
{%- endmacro %}


{# One row per subject of the old rows: subject_type, subject, restart_at (P_s). #}
{% macro ops_recovery_restart_points(relation, old_rows) -%}
    {%- set quiet_minutes = var('recovery_quiet_minutes', 30) | int -%}
    {%- set horizon = "case when restart_rows.subject_type = 'job' then restart_horizon.job_horizon_at else restart_horizon.family_horizon_at end" -%}
    select
        restart_rows.subject_type,
        restart_rows.subject,
        coalesce(
            min(case
                when not (
                    restart_rows.is_recovered
                    and restart_rows.recovered_at < {{ horizon }}
                    and (restart_rows.recovery_basis <> 'errors_stopped'
                         or {{ timestamp_add('restart_rows.last_error_at', quiet_minutes, 'minute') }} < {{ horizon }})
                )
                and restart_rows.started_at < {{ horizon }}
                then restart_rows.started_at
            end),
            {{ horizon }}
        ) as restart_at
    from {{ relation }} as restart_rows
    cross join ({{ ops_recovery_horizons(relation, old_rows) }}) as restart_horizon
    where {{ old_rows }}
    group by restart_rows.subject_type, restart_rows.subject, restart_horizon.family_horizon_at,
             restart_horizon.job_horizon_at
{%- endmacro %}


{# The earliest restart point of the subjects of one type (`job` or `family`); that type's
   horizon when none of its subjects has an open incident (1970 when the table is empty). #}
{% macro ops_recovery_restart_from(relation, old_rows, subject_type) -%}
    (
        select coalesce(
            min(restart_points.restart_at),
            (select {{ subject_type }}_horizon_at from ({{ ops_recovery_horizons(relation, old_rows) }}) as type_horizon)
        )
        from ({{ ops_recovery_restart_points(relation, old_rows) }}) as restart_points
        where restart_points.subject_type = '{{ subject_type }}'
    )
{%- endmacro %}


{# Post-hook: delete the old rows that this run has replaced (started at or after their P_s). #}
{% macro ops_recovery_delete_replaced(relation) -%}
    {{ ops_delete_replaced(relation, 'incident_id', ops_recovery_restart_points, ['subject_type', 'subject'],
                           'replaced.started_at >= replaced_points.restart_at') }}
{%- endmacro %}


{#
    Post-hook of the append + replace models: delete the rows of earlier runs (`_build_id` not
    this invocation's) that this run replaced. `restart_points(relation, old_rows)` gives the
    restart points over those old rows, joined on `join_columns`; `replaced_when` is the
    condition on `replaced` (a row) and `replaced_points` (its restart point).
#}
{% macro ops_delete_replaced(relation, row_id, restart_points, join_columns, replaced_when) -%}
    {%- set old_rows = "_build_id <> '" ~ invocation_id ~ "'" -%}
    delete from {{ relation }}
    where {{ old_rows }}
      and {{ row_id }} in (
        select replaced.{{ row_id }}
        from {{ relation }} as replaced
        inner join ({{ restart_points(relation, old_rows) }}) as replaced_points
            on {% for column in join_columns %}replaced_points.{{ column }} = replaced.{{ column }}
            {%- if not loop.last %} and {% endif %}{% endfor %}
        where replaced.{{ old_rows }}
          and ({{ replaced_when }})
      )
{%- endmacro %}
