with

source as (

    select * from {{ source('ops', 'system_events') }}

),

parsed as (

    {#- payload = coalesce(event_data, metadata), parsed once; the payload keys read below -#}
    {{ select_json_fields('source', 'coalesce(event_data, metadata)', 'payload', {
        'p_component': 'component',
        'p_job_name': 'job_name',
        'p_error': 'error',
        'p_error_message': 'error_message',
        'p_last_error': 'last_error',
        'p_original_error': 'original_error',
        'p_primary_error': 'primary_error',
        'p_permit_error': 'permit_error',
        'p_error_type': 'error_type',
        'p_error_code': 'error_code',
        'p_stack': 'stack',
        'p_stack_trace': 'stack_trace',
        'p_context_stack': 'context.stack',
        'p_reason': 'reason',
        'p_operation': 'operation',
        'p_decision_id': 'decision_id',
        'p_context_decision_id': 'context.decision_id',
        'p_tweet_id': 'tweet_id',
        'p_context_tweet_id': 'context.tweet_id',
        'p_target_tweet_id': 'target_tweet_id',
    }) }}

),

renamed as (

    select

        ----------  ids
        id as event_id,
        event_type,

        ----------  severity
        {{ normalise_severity('severity') }} as severity,
        severity as severity_raw,

        ----------  text
        message,
        coalesce({{ clean_text('component') }}, {{ clean_text('p_component') }}) as component,
        coalesce(
            {{ strip_suffix('event_type', '_job_execution_failed') }},
            {{ strip_suffix('event_type', '_consecutive_failures') }},
            {{ clean_text('p_job_name') }}
        ) as job_name,
        coalesce(
            {{ clean_text('p_error') }},
            {{ clean_text('p_error_message') }},
            {{ clean_text('p_last_error') }},
            {{ clean_text('p_original_error') }},
            {{ clean_text('p_primary_error') }},
            {{ clean_text('p_permit_error') }}
        ) as error_text,
        {{ clean_text('p_error_type') }} as error_type,
        {{ clean_text('p_error_code') }} as error_code,
        coalesce(
            {{ clean_text('p_stack') }},
            {{ clean_text('p_stack_trace') }},
            {{ clean_text('p_context_stack') }}
        ) as stack,
        {{ clean_text('p_reason') }} as reason,
        {{ clean_text('p_operation') }} as operation,

        ----------  references carried in the payload (ErrorTracker puts them under context)
        coalesce({{ clean_text('p_decision_id') }}, {{ clean_text('p_context_decision_id') }}) as decision_id,
        coalesce({{ clean_text('p_tweet_id') }}, {{ clean_text('p_context_tweet_id') }}) as tweet_id,
        {{ clean_text('p_target_tweet_id') }} as target_tweet_id,

        ----------  payload
        payload,
        case
            when event_data is not null then 'event_data'
            when metadata is not null then 'metadata'
        end as payload_column,

        ----------  timestamps
        created_at,
        "timestamp" as event_timestamp,

        ----------  extraction bookkeeping
        _deleted_at is not null as is_deleted,
        _deleted_at as deleted_at,
        _loaded_at

    from parsed

)

select * from renamed
