{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        pre_hook=["{{ ops_postgres_plan_hints(seq_scans=false) }}", "{{ ops_delete_days_to_rebuild(include_newest_day=true) }}"],
    )
}}

{#-
    The all-time background counts of mart_shutdown_causes, by UTC day: per day and cause (a
    blocking reason or an error family) the cause's events up to as_of, with the first and last;
    cause_type `all_signals` (cause NULL) holds every signal of the day (its first one gives the
    start of the observed span). The mart sums the days.

    Incremental by day (delete + insert on day_start_at). The pre-hook deletes the days from the
    earliest of: the UTC day of the shutdown rebuild anchor (ops_shutdown_rebuild_anchor), the
    newest day built (it stopped at the previous as_of), and the day of the oldest fct_system_events
    row loaded after this table's watermark (source_loaded_through, minus var('fct_lookback_hours'),
    default 0; a deletion mark gets a new, larger _loaded_at, so the day of a deleted event is rebuilt). The run then
    rebuilds every day after the newest day left, reading signals from that day's end only, so
    the pre-hook and the run cannot disagree. A full build runs the same code over all signals.
-#}

{%- set epoch = timestamptz_literal('1970-01-01T00:00:00+00:00') %}

with

{% if is_incremental() -%}
bounds as (

    select coalesce({{ timestamp_add('max(built.day_start_at)', 24, 'hour') }}, {{ epoch }}) as rebuild_from
    from {{ this }} as built

),
{%- endif %}

signals as (

    select * from {{ ref('int_shutdown_signals') }}

),

params as (

    select {{ as_of_timestamp() }} as as_of

),

in_range as (

    select
        signals.signal_at,
        signals.signal_kind,
        signals.error_family,
        signals.block_reason,
        signals.is_blocking
    from signals
    cross join params
    where signals.signal_at <= params.as_of
    {%- if is_incremental() %}
      and signals.signal_at >= (select rebuild_from from bounds)
    {%- endif %}

),

tagged as (

    select
        cast(floor({{ ops_an_seconds_between(epoch, 'signal_at') }} / 86400.0) as bigint) as day_number,
        case when signal_kind = 'error' then 'error_family' else 'block_reason' end as cause_type,
        case when signal_kind = 'error' then error_family else block_reason end as cause,
        signal_at
    from in_range
    where signal_kind = 'error' or is_blocking

    union all

    select
        cast(floor({{ ops_an_seconds_between(epoch, 'signal_at') }} / 86400.0) as bigint) as day_number,
        'all_signals' as cause_type,
        cast(null as {{ dbt.type_string() }}) as cause,
        signal_at
    from in_range

),

loaded as (

    {#- the newest load of any fct row (deleted ones included) in the days rebuilt: the watermark #}
    select max(events._loaded_at) as source_loaded_through
    from {{ ref('fct_system_events') }} as events
    {%- if is_incremental() %}
    where events.created_at >= (select rebuild_from from bounds)
    {%- endif %}

),

final as (

    select
        {{ timestamp_add(epoch, 'tagged.day_number * 24', 'hour') }} as day_start_at,
        tagged.cause_type,
        tagged.cause,
        count(*) as n_events,
        min(tagged.signal_at) as first_signal_at,
        max(tagged.signal_at) as last_signal_at,
        max(loaded.source_loaded_through) as source_loaded_through
    from tagged
    cross join loaded
    group by tagged.day_number, tagged.cause_type, tagged.cause

)

select * from final
