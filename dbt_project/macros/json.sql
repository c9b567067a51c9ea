{#-
    JSON payloads land in raw as TEXT (already validated by the extractor, possibly NULL).
    DuckDB: the JSON type and json_extract_string with a JSONPath.
    PostgreSQL: jsonb and the ->> / #>> operators.
    json_text / json_text_path return the value as text (strings unquoted, objects and
    arrays as JSON text, JSON null as SQL NULL); a payload that is not an object gives NULL.
    A payload holding the escape \u0000 parses as NULL on both targets (json_text_or_null): the
    source's `json` columns accept it, PostgreSQL's jsonb raises on it, and one bad row must
    never fail staging.
-#}

{% macro _json_check_key(key) -%}
    {%- if not modules.re.match('^[A-Za-z_][A-Za-z0-9_]*$', key) -%}
        {{ exceptions.raise_compiler_error("json key must be a plain identifier, got: " ~ key) }}
    {%- endif -%}
{%- endmacro %}


{#
    JSON text, or NULL when it holds the escape \u0000 (backslash, u, 0000). PostgreSQL's jsonb
    refuses it ("unsupported Unicode escape sequence") and would fail the whole view on one row;
    DuckDB accepts it, so both targets drop it alike to give the same rows. A strpos guard costs
    next to nothing per row (no per-row exception handler). chr(92) is the backslash, so the
    pattern does not depend on how a server reads backslashes in string literals. The guard is
    conservative: an escaped backslash followed by u0000 (JSON `\\u0000`) is dropped too.
#}
{% macro json_text_or_null(expr) -%}
    case when strpos({{ expr }}, chr(92) || 'u0000') = 0 then {{ expr }} end
{%- endmacro %}


{# Parse a JSON text expression into the adapter's JSON type (NULL for a \u0000 payload). #}
{% macro json_parse(expr) -%}
    {{ return(adapter.dispatch('json_parse', 'ops_warehouse')(expr)) }}
{%- endmacro %}

{% macro default__json_parse(expr) -%}
    cast({{ json_text_or_null(expr) }} as json)
{%- endmacro %}

{% macro duckdb__json_parse(expr) -%}
    cast({{ json_text_or_null(expr) }} as json)
{%- endmacro %}

{% macro postgres__json_parse(expr) -%}
    cast({{ json_text_or_null(expr) }} as jsonb)
{%- endmacro %}


{# The adapter's JSON column type (for casts of NULL and for contracts). #}
{% macro json_type() -%}
    {{ return(adapter.dispatch('json_type', 'ops_warehouse')()) }}
{%- endmacro %}

{% macro default__json_type() -%}json{%- endmacro %}

{% macro duckdb__json_type() -%}json{%- endmacro %}

{% macro postgres__json_type() -%}jsonb{%- endmacro %}


{# Top-level key of a parsed JSON value, as text. #}
{% macro json_text(json_expr, key) -%}
    {%- do _json_check_key(key) -%}
    {{ return(adapter.dispatch('json_text', 'ops_warehouse')(json_expr, key)) }}
{%- endmacro %}

{% macro default__json_text(json_expr, key) -%}
    ({{ json_expr }} ->> '{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(json_expr, key) -%}
    json_extract_string({{ json_expr }}, '$.{{ key }}')
{%- endmacro %}

{% macro postgres__json_text(json_expr, key) -%}
    ({{ json_expr }} ->> '{{ key }}')
{%- endmacro %}


{# Nested key of a parsed JSON value, as text: json_text_path(payload, ['context', 'stack']). #}
{% macro json_text_path(json_expr, path) -%}
    {%- if path is string -%}
        {%- set path = path.split('.') -%}
    {%- endif -%}
    {%- for key in path -%}{%- do _json_check_key(key) -%}{%- endfor -%}
    {{ return(adapter.dispatch('json_text_path', 'ops_warehouse')(json_expr, path)) }}
{%- endmacro %}

{% macro default__json_text_path(json_expr, path) -%}
    ({{ json_expr }} #>> '{ {{- path | join(',') -}} }')
{%- endmacro %}

{% macro duckdb__json_text_path(json_expr, path) -%}
    json_extract_string({{ json_expr }}, '$.{{ path | join('.') }}')
{%- endmacro %}

{% macro postgres__json_text_path(json_expr, path) -%}
    ({{ json_expr }} #>> '{ {{- path | join(',') -}} }')
{%- endmacro %}


{#
    select_json_fields(relation, json_text, json_alias, fields)

    The body of a CTE: every column of `relation`, the JSON text expression `json_text` parsed
    once as `json_alias`, and one text column per entry of `fields` ({column: 'key' or
    'nested.key'}), in the order given. Reading many keys of one payload this way parses it once
    per row instead of once per key:
    - DuckDB: one json_extract_string with a list of paths (≈10× faster than one call per key);
    - PostgreSQL: the jsonb cast in a LATERAL subquery with OFFSET 0, so the planner cannot
      inline the cast into every ->> (it would parse the payload once per key); filters on the
      relation's columns are still pushed down to the scan.
#}
{% macro select_json_fields(relation, json_text, json_alias, fields) -%}
    {%- for path in fields.values() -%}
        {%- for key in path.split('.') -%}{%- do _json_check_key(key) -%}{%- endfor -%}
    {%- endfor -%}
    {{ return(adapter.dispatch('select_json_fields', 'ops_warehouse')(relation, json_text, json_alias, fields)) }}
{%- endmacro %}

{% macro default__select_json_fields(relation, json_text, json_alias, fields) -%}
    select
        {{ relation }}.*,
        {{ json_parse(json_text) }} as {{ json_alias }}
        {%- for column, path in fields.items() %},
        {{ json_text_path(json_parse(json_text), path.split('.')) }} as {{ column }}
        {%- endfor %}
    from {{ relation }}
{%- endmacro %}

{% macro duckdb__select_json_fields(relation, json_text, json_alias, fields) -%}
    select
        * exclude (_json_fields)
        {%- for column in fields.keys() %},
        _json_fields[{{ loop.index }}] as {{ column }}
        {%- endfor %}
    from (
        select
            {{ relation }}.*,
            {{ json_parse(json_text) }} as {{ json_alias }},
            json_extract_string(
                {{ json_text_or_null(json_text) }},
                [{% for path in fields.values() %}'$.{{ path }}'{% if not loop.last %}, {% endif %}{% endfor %}]
            ) as _json_fields
        from {{ relation }}
    ) as with_json_fields
{%- endmacro %}

{% macro postgres__select_json_fields(relation, json_text, json_alias, fields) -%}
    select
        {{ relation }}.*,
        parsed_json.{{ json_alias }}
        {%- for column, path in fields.items() %},
        {{ json_text_path('parsed_json.' ~ json_alias, path.split('.')) }} as {{ column }}
        {%- endfor %}
    from {{ relation }}
    cross join lateral (
        select {{ json_parse(json_text) }} as {{ json_alias }}
        offset 0
    ) as parsed_json
{%- endmacro %}
