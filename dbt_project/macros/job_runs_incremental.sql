{#
    Restart points of the incremental int_job_runs, computed from its own rows (the pattern of
    macros/incremental_replace.sql). `old_rows` selects the rows of the previous state: the model
    passes `true` (it reads the table before its new rows are inserted), the post-hook
    `_build_id <> invocation_id`, so model and hook agree.

    Horizon H = least(as_of, max(observed_at) of the old rows) − var('job_runs_rebuild_hours', 48) h
    (1970 when the table is empty): later information (late-committed events, a firing's next
    firing, its timer_scheduled) only changes runs from H on.
    A job restarts at P_j = its latest firing (fired_at) at or before H — every event after it
    belongs to that firing or a later one — or at H when it has no firing before H. Event runs
    from P_j on and snapshot runs observed from H on are recomputed and replaced.
#}

{% macro ops_job_runs_horizon(relation, old_rows) -%}
    {{ ops_horizon_before_newest(relation, old_rows, 'observed_at', var('job_runs_rebuild_hours', 48) | int) }}
{%- endmacro %}


{# One row per job of the old rows: job_name, restart_at (P_j), horizon_at (H). #}
{% macro ops_job_runs_restart_points(relation, old_rows) -%}
    select
        restart_rows.job_name,
        coalesce(
            max(case when restart_rows.fired_at <= restart_horizon.horizon_at then restart_rows.fired_at end),
            restart_horizon.horizon_at
        ) as restart_at,
        restart_horizon.horizon_at
    from {{ relation }} as restart_rows
    cross join (select {{ ops_job_runs_horizon(relation, old_rows) }} as horizon_at) as restart_horizon
    where {{ old_rows }}
    group by restart_rows.job_name, restart_horizon.horizon_at
{%- endmacro %}


{# L: the earliest restart point (H when the table has no job; 1970 when empty). #}
{% macro ops_job_runs_restart_from(relation, old_rows) -%}
    (
        select coalesce(min(restart_points.restart_at), {{ ops_job_runs_horizon(relation, old_rows) }})
        from ({{ ops_job_runs_restart_points(relation, old_rows) }}) as restart_points
    )
{%- endmacro %}


{# Post-hook: delete the old rows this run replaced (event runs from P_j on, snapshot runs
   observed from H on). #}
{% macro ops_job_runs_delete_replaced(relation) -%}
    {{ ops_delete_replaced(relation, 'job_run_id', ops_job_runs_restart_points, ['job_name'],
        "(replaced.inferred_from like 'heartbeat%' and replaced.observed_at >= replaced_points.horizon_at)"
        ~ " or (replaced.inferred_from not like 'heartbeat%' and replaced.run_at >= replaced_points.restart_at)") }}
{%- endmacro %}


{# least(as_of, max(column) of the old rows) − rebuild_hours h; 1970 when there is none (the
   horizon of int_job_runs). #}
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
