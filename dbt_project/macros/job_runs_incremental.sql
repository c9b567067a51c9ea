{#
    Restart points of the incremental int_job_runs, computed from its own rows (the pattern of
    macros/incremental_replace.sql). `old_rows` selects the rows of the previous state: the model
    passes `true` (it reads the table before its new rows are inserted), the post-hook
    `_build_id <> invocation_id`, so model and hook agree.

    Horizon H = least(as_of, max(observed_at) of the old rows, W) − var('job_runs_rebuild_hours', 2) h
    (1970 when the table is empty), W the oldest created_at among the fct_system_events rows
    loaded (or marked deleted) since the old rows' source_loaded_through and the oldest run_at
    among the raw metrics_scraper_runs rows loaded (or marked deleted) since their
    scraper_loaded_through: nothing before W is new, so the rebuild follows what was loaded, not
    a fixed number of hours
    (max(observed_at) is at or before the as_of of the build that wrote the rows, so rows
    loaded earlier but past that as_of count as new). Heartbeat snapshots are observed at
    their load, after every earlier build's as_of, so always from H on.
    A job restarts at P_j = its latest firing (fired_at) at or before H — every event after it
    belongs to that firing or a later one — or at H when it has no firing before H. Event runs
    from P_j on and snapshot runs observed from H on are recomputed and replaced.
#}

{% macro ops_job_runs_horizon(relation, old_rows) -%}
    {%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') -%}
    {%- set watermark = 'select coalesce(max(watermark_rows.{column}), ' ~ epoch ~ ') from ' ~ relation
                        ~ ' as watermark_rows where ' ~ old_rows -%}
    {%- set events_loaded_since = ops_oldest_created_at_loaded_after(
            ref('fct_system_events'), watermark.replace('{column}', 'source_loaded_through')) -%}
    {%- set scraper_runs_loaded_since = ops_oldest_created_at_loaded_after(
            source('ops', 'metrics_scraper_runs'), watermark.replace('{column}', 'scraper_loaded_through'), 'run_at') -%}
    (
        select case
            when count(*) = 0 then {{ epoch }}
            else {{ timestamp_add(
                'least(' ~ as_of_timestamp() ~ ', max(horizon_rows.observed_at), coalesce('
                ~ events_loaded_since ~ ', ' ~ as_of_timestamp() ~ '), coalesce('
                ~ scraper_runs_loaded_since ~ ', ' ~ as_of_timestamp() ~ '))',
                -(var('job_runs_rebuild_hours', 2) | int), 'hour') }}
        end
        from {{ relation }} as horizon_rows
        where {{ old_rows }}
    )
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
