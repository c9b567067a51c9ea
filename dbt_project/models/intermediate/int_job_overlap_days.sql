{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook="{{ ops_delete_job_overlap_days_to_rebuild() }}",
    )
}}

{#-
    Per job and UTC day: how long the job was running (union of its runs with a known start and
    end) and how much of that time at least one other job was running too. Every run start / end
    (and every UTC midnight, so no piece crosses a day) cuts the time line into pieces; for each
    job's point of view a running count of its own runs and of all runs gives, per piece,
    whether the job ran and whether another one ran alongside. Exact microseconds (bigint).

    Incremental by day: the pre-hook deletes the days from the earliest of the newest day built
    and the day where int_job_runs' earliest rewrite since this table's watermark began
    (job_runs_built_through; int_job_runs._rebuilt_from); the run rebuilds every day after the
    newest day left, from the runs that end on or after it.
-#}

with

{% if is_incremental() -%}
rebuild as (

    select coalesce(max(built.run_date) + 1, date '1970-01-01') as rebuild_from
    from {{ this }} as built

),
{%- endif %}

runs as (

    select job_runs.job_name, job_runs.run_started_at, job_runs.run_ended_at
    from {{ ref('int_job_runs') }} as job_runs
    {%- if is_incremental() %}
    cross join rebuild
    {%- endif %}
    where job_runs.run_started_at is not null
      and job_runs.run_ended_at is not null
      and job_runs.run_ended_at > job_runs.run_started_at
      {%- if is_incremental() %}
      and {{ to_utc_date('job_runs.run_ended_at') }} >= rebuild.rebuild_from
      {#- the same bound as a literal (the day after the newest day the pre-hook will leave),
          so PostgreSQL reads the index range of run_ended_at, not the whole table #}
      and job_runs.run_ended_at >= {{ ops_timestamp_bound(
            "(select " ~ timestamp_add("cast('1970-01-01 00:00:00+00:00' as timestamp with time zone)",
                "24 * (coalesce(max(kept.run_date) + 1, date '1970-01-01') - date '1970-01-01')", 'hour')
            ~ " from " ~ this ~ " as kept where kept.run_date < " ~ ops_job_overlap_rebuild_cutoff() ~ ")") }}
      {%- endif %}

),

jobs as (

    select distinct job_name from runs

),

day_range as (

    select
        min({{ to_utc_date('run_started_at') }}) - date '1970-01-01' as first_day_n,
        max({{ to_utc_date('run_ended_at') }}) - date '1970-01-01' as last_day_n
    from runs

),

integers as (

    {{ ops_an_integers(5) }}

),

midnights as (

    select {{ timestamp_add("cast('1970-01-01 00:00:00+00:00' as timestamp with time zone)", '24 * (day_range.first_day_n + integers.n)', 'hour') }} as at_
    from day_range
    inner join integers
        on integers.n <= day_range.last_day_n - day_range.first_day_n + 1

),

bounds as (

    select job_name as run_job, run_started_at as at_, 1 as delta from runs
    union all
    select job_name, run_ended_at, -1 from runs

),

points as (

    select jobs.job_name, bounds.at_,
           case when bounds.run_job = jobs.job_name then bounds.delta else 0 end as own_delta,
           bounds.delta as all_delta
    from jobs
    cross join bounds

    union all

    select jobs.job_name, midnights.at_, 0, 0
    from jobs
    cross join midnights

),

point_deltas as (

    select job_name, at_, sum(own_delta) as own_delta, sum(all_delta) as all_delta
    from points
    group by job_name, at_

),

running as (

    select
        job_name,
        at_,
        lead(at_) over (partition by job_name order by at_) as next_at,
        sum(own_delta) over (partition by job_name order by at_ rows between unbounded preceding and current row) as own_running,
        sum(all_delta) over (partition by job_name order by at_ rows between unbounded preceding and current row) as all_running
    from point_deltas

),

pieces as (

    select
        job_name,
        {{ to_utc_date('at_') }} as run_date,
        {{ ops_an_microseconds_between('at_', 'next_at') }} as piece_us,
        all_running - own_running > 0 as others_running
    from running
    where next_at is not null
      and own_running > 0

)

select
    pieces.job_name,
    pieces.run_date,
    cast(sum(pieces.piece_us) as bigint) as run_us,
    cast(sum(case when pieces.others_running then pieces.piece_us else 0 end) as bigint) as overlap_us,
    {#- the newest int_job_runs write this run has seen: the next run rebuilds from where the
        rewrites after it began #}
    max(job_runs_seen.job_runs_built_through) as job_runs_built_through
from pieces
cross join (select max(_built_at) as job_runs_built_through from {{ ref('int_job_runs') }}) as job_runs_seen
{%- if is_incremental() %}
cross join rebuild
where pieces.run_date >= rebuild.rebuild_from
{%- endif %}
group by pieces.job_name, pieces.run_date
