{#
    Restart points of the incremental int_recovery_incidents, computed from its own rows.

    `relation` is the model's table and `old_rows` a boolean SQL condition selecting the rows of
    the previous state (the model passes `true` — it reads the table before its new rows are
    inserted; the post-hook passes `_build_id <> invocation_id`), so model and hook agree.

    Horizon B = least(as_of, max(last_error_at) of the old rows) − var('recovery_rebuild_hours', 48) h.
    max(last_error_at) is at or before the as_of of the build that wrote the rows, so B leaves the
    full horizon for late information (late-committed events; a job firing only counts as a
    success once its next firing is seen) after that build too, even when builds are further
    apart than the horizon. B is 1970 (recompute everything) when the table is empty.

    An incident is *closed before B* when it recovered before B and, for errors_stopped runs,
    its last error + var('recovery_quiet_minutes') is before B too (no later error can join it).
    Closed incidents are final. A subject restarts at P_s = least(B, first started_at of its
    incidents that are not closed before B); every incident of the subject from P_s on is
    recomputed and replaced.
#}

{% macro ops_recovery_horizon(relation, old_rows) -%}
    {{ ops_horizon_before_newest(relation, old_rows, 'last_error_at', var('recovery_rebuild_hours', 48) | int) }}
{%- endmacro %}


{# least(as_of, max(column) of the old rows) − rebuild_hours h; 1970 when there is none (the
   horizon of the append + replace models: this one and macros/job_runs_incremental.sql). #}
{% macro ops_horizon_before_newest(relation, old_rows, column, rebuild_hours) -%}
    (
        select coalesce(
            case
                when max(horizon_rows.{{ column }}) < {{ as_of_timestamp() }}
                then {{ timestamp_add('max(horizon_rows.' ~ column ~ ')', -rebuild_hours, 'hour') }}
                else {{ timestamp_add(as_of_timestamp(), -rebuild_hours, 'hour') }}
            end,
            {{ timestamptz_literal('1970-01-01T00:00:00+00:00') }}
        )
        from {{ relation }} as horizon_rows
        where {{ old_rows }}
    )
{%- endmacro %}


{# One row per subject of the old rows: subject_type, subject, restart_at (P_s). #}
{% macro ops_recovery_restart_points(relation, old_rows) -%}
    {%- set quiet_minutes = var('recovery_quiet_minutes', 30) | int -%}
    select
        restart_rows.subject_type,
        restart_rows.subject,
        coalesce(
            min(case
                when not (
                    restart_rows.is_recovered
                    and restart_rows.recovered_at < restart_horizon.horizon_at
                    and (restart_rows.recovery_basis <> 'errors_stopped'
                         or {{ timestamp_add('restart_rows.last_error_at', quiet_minutes, 'minute') }} < restart_horizon.horizon_at)
                )
                and restart_rows.started_at < restart_horizon.horizon_at
                then restart_rows.started_at
            end),
            restart_horizon.horizon_at
        ) as restart_at
    from {{ relation }} as restart_rows
    cross join (select {{ ops_recovery_horizon(relation, old_rows) }} as horizon_at) as restart_horizon
    where {{ old_rows }}
    group by restart_rows.subject_type, restart_rows.subject, restart_horizon.horizon_at
{%- endmacro %}


{# L: the earliest restart point (B when no subject has an open incident; 1970 when empty). #}
{% macro ops_recovery_restart_from(relation, old_rows) -%}
    (
        select coalesce(min(restart_points.restart_at), {{ ops_recovery_horizon(relation, old_rows) }})
        from ({{ ops_recovery_restart_points(relation, old_rows) }}) as restart_points
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
