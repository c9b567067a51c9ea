{#-
    One row per error family seen in int_events_classified (every event, error or not): its
    most common category and component, first and last seen, counts and the share of its events
    that are errors. Summed from int_error_family_hours (maintained hour by hour), not from the
    events. See dim_error_families.yml.
-#}

with

hours as (

    select * from {{ ref('int_error_family_hours') }}
    where error_family is not null

),

families as (

    select
        error_family,
        min(first_created_at) as first_seen_at,
        max(last_created_at) as last_seen_at,
        cast(sum(n_events) as bigint) as n_events,
        cast(sum(n_error_events) as bigint) as n_error_events,
        cast(count(distinct event_type) as bigint) as n_event_types,
        cast(count(distinct error_category) as bigint) as n_categories,
        cast(count(distinct component) as bigint) as n_components
    from hours
    group by error_family

),

category_counts as (

    select
        error_family,
        error_category,
        row_number() over (
            partition by error_family
            order by sum(n_events) desc, error_category
        ) as category_rank
    from hours
    group by error_family, error_category

),

component_counts as (

    select
        error_family,
        component,
        row_number() over (
            partition by error_family
            order by sum(n_events) desc, component
        ) as component_rank
    from hours
    group by error_family, component

),

final as (

    select
        families.error_family,
        category_counts.error_category,
        component_counts.component,
        families.first_seen_at,
        families.last_seen_at,
        families.n_events,
        families.n_error_events,
        {{ ops_trend_ratio('families.n_error_events', 'families.n_events') }} as error_share,
        families.n_event_types,
        families.n_categories,
        families.n_components
    from families
    left join category_counts
        on category_counts.error_family = families.error_family
       and category_counts.category_rank = 1
    left join component_counts
        on component_counts.error_family = families.error_family
       and component_counts.component_rank = 1

)

select * from final
