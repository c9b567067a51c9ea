{#- Value normalisation shared by the staging models (plain SQL, same on both targets). -#}

{#
    Severity as written by the bot → info | warning | error | critical | unknown.
    The source's check allows info, warning, error, critical, but some paths write NULL,
    notice, high, deadlock, and mixed case. Unrecognised values are kept lower-cased and
    trimmed (the accepted_values test on severity warns about them); NULL/blank → unknown.
#}
{% macro normalise_severity(col) -%}
    case lower(trim({{ col }}))
        when 'info' then 'info'
        when 'notice' then 'info'
        when 'warning' then 'warning'
        when 'warn' then 'warning'
        when 'error' then 'error'
        when 'high' then 'error'
        when 'deadlock' then 'error'
        when 'critical' then 'critical'
        when 'fatal' then 'critical'
        when '' then 'unknown'
        else coalesce(lower(trim({{ col }})), 'unknown')
    end
{%- endmacro %}

{#
    Run / attempt status: lower-cased and trimmed, the older writer's `failed` → `failure`.
    NULL stays NULL.
#}
{% macro normalise_run_status(col) -%}
    case lower(trim({{ col }}))
        when 'failed' then 'failure'
        when '' then null
        else lower(trim({{ col }}))
    end
{%- endmacro %}
