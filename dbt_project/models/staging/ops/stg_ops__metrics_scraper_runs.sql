with

source as (

    select * from {{ source('ops', 'metrics_scraper_runs') }}

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
