with

source as (

    select * from {{ source('ops', 'decision_snapshots') }}

),

keyed as (

    {#- the key's time part as microseconds since the epoch: the text of a timestamptz differs
        between the targets and with the reading session's time zone -#}
    select
        *,
        {{ ops_an_microseconds_between(timestamptz_literal('1970-01-01T00:00:00+00:00'), '_observed_at') }} as _observed_us
    from source

),

renamed as (

    {#- cleaned like stg_ops__decisions (same status and id cleaning, so a snapshot's status
        compares with the decision's current one); features are not parsed: nothing reads them
        from the change log -#}
    select
        ----------  ids
        {{ surrogate_key(['decision_id', '_observed_us']) }} as decision_snapshot_id,
        decision_id,
        id as decision_row_id,
        {{ clean_text('tweet_id') }} as tweet_id,
        {{ clean_text('target_tweet_id') }} as target_tweet_id,

        ----------  attributes as observed
        lower(trim(decision_type)) as decision_type,
        lower(trim(status)) as status,
        status as status_raw,
        skip_reason,
        error_message,
        coalesce(is_test_post, false) as is_test_post,

        ----------  timestamps as observed
        scheduled_at,
        posted_at,
        created_at,
        updated_at,

        ----------  the observation
        lower(trim(_change)) as change_type,
        _observed_at as observed_at,
        _row_hash
    from keyed

)

select * from renamed
