with

source as (

    {#- a row the extractor saw deleted in the source (_deleted_at set) stays in raw as history,
        but is no longer part of the source's current state -#}
    select * from {{ source('ops', 'job_heartbeats') }}
    where _deleted_at is null

),

renamed as (

    select
        job_name,
        {{ normalise_run_status('last_run_status') }} as last_run_status,
        last_run_status as last_run_status_raw,
        last_error,
        coalesce(consecutive_failures, 0) as consecutive_failures,
        last_success as last_success_at,
        last_failure as last_failure_at,
        updated_at,
        _loaded_at,
        _row_hash
    from source

)

select * from renamed
