{#
    The incremental filter on the extractor's watermark: rows loaded since the newest _loaded_at
    already in this model, minus var('fct_lookback_hours'). Renders nothing on a full build.
#}
{% macro loaded_since_watermark() -%}
    {% if is_incremental() %}
    {%- set lookback_minutes = ((var('fct_lookback_hours', 0.25) | float) * 60) | int %}
    where _loaded_at > (
        select coalesce(
            {{ timestamp_add('max(_loaded_at)', -lookback_minutes, 'minute') }},
            {{ timestamptz_literal('1970-01-01T00:00:00+00:00') }}
        )
        from {{ this }}
    )
    {% endif %}
{%- endmacro %}
