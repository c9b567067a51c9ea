with

source as (

    {#- a row the extractor saw deleted in the source (_deleted_at set) stays in raw as history,
        but is no longer part of the source's current state -#}
    select * from {{ source('ops', 'posting_attempts') }}
    where _deleted_at is null

),

renamed as (

    select
        id as attempt_id,
        decision_id,
        {{ clean_text('target_tweet_id') }} as target_tweet_id,
        {{ clean_text('tweet_id') }} as tweet_id,
        lower(trim(job_type)) as job_type,
        {{ normalise_run_status('status') }} as status,
        status as status_raw,
        error_message,
        {{ json_parse('metrics') }} as metrics,
        created_at,
        _loaded_at,
        _row_hash
    from source

)

select * from renamed
