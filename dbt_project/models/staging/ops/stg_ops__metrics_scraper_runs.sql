with

source as (

    {#- a row the extractor saw deleted in the source (_deleted_at set) stays in raw as history,
        but is no longer part of the source's current state -#}
    select * from {{ source('ops', 'metrics_scraper_runs') }}
    where _deleted_at is null

),

renamed as (

    select
        id as scraper_run_id,
        run_at,
        runner_mode as is_runner_mode,
        lower(trim(status)) as status,
        status as status_raw,
        eligible_count,
        scraped_count,
        updated_count,
        skipped_count,
        failed_count,
        duration_ms,
        skip_reason,
        error_message,
        _loaded_at,
        _row_hash
    from source

)

select * from renamed
