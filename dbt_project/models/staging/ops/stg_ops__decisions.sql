with

source as (

    {#- a row the extractor saw deleted in the source (_deleted_at set) stays in raw as history,
        but is no longer part of the source's current state -#}
    select * from {{ source('ops', 'content_generation_metadata_comprehensive') }}
    where _deleted_at is null

),

parsed as (

    select
        *,
        {{ json_parse('features') }} as features_json
    from source

),

renamed as (

    select
        ----------  ids
        decision_id,
        id as decision_row_id,
        {{ clean_text('tweet_id') }} as tweet_id,
        {{ clean_text('target_tweet_id') }} as target_tweet_id,
        thread_tweet_ids as thread_tweet_ids_json,

        ----------  attributes
        lower(trim(decision_type)) as decision_type,
        lower(trim(status)) as status,
        status as status_raw,
        skip_reason,
        error_message,
        {{ safe_cast_bigint(json_text('features_json', 'retry_count')) }} as retry_count,
        features_json as features,

        ----------  flags
        coalesce(is_test_post, false) as is_test_post,
        (lower(trim(status)) = 'posted' and {{ clean_text('tweet_id') }} is null) as is_null_tweet_id,

        ----------  timestamps
        scheduled_at,
        posted_at,
        created_at,
        updated_at,

        _loaded_at,
        _row_hash
    from parsed

)

select * from renamed
