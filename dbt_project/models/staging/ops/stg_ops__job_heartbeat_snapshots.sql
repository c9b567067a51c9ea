with

source as (

    select * from {{ source('ops', 'job_heartbeat_snapshots') }}

),

renamed as (

    select
        {{ surrogate_key(['job_name', '_row_hash']) }} as heartbeat_snapshot_id,
        job_name,
        {{ normalise_run_status('last_run_status') }} as last_run_status,
        last_run_status as last_run_status_raw,
        last_error,
        coalesce(consecutive_failures, 0) as consecutive_failures,
        last_success as last_success_at,
        last_failure as last_failure_at,
        updated_at,
        _observed_at as observed_at,
        _row_hash
    from source

)

select * from renamed
