with

source as (

    select * from {{ source('ops', '_quarantine') }}

),

renamed as (

    select
        {{ surrogate_key(['source_table', '_row_hash', 'reason']) }} as quarantine_id,
        source_table,
        row_key,
        reason,
        row_data,
        first_seen_at,
        last_seen_at,
        _row_hash
    from source

)

select * from renamed
