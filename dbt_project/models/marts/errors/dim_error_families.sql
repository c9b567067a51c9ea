{#-
    One row per error family seen in int_events_classified (every event, error or not): its
    most common category and component, first and last seen, counts and the share of its events
    that are errors. See dim_error_families.yml.
-#}

with

events as (

    select * from {{ ref('int_events_classified') }}

),

families as (

    select
        error_family,
        min(created_at) as first_seen_at,
        max(created_at) as last_seen_at,
        cast(count(*) as bigint) as n_events,
        cast(sum(case when is_error then 1 else 0 end) as bigint) as n_error_events,
        cast(count(distinct event_type) as bigint) as n_event_types,
        cast(count(distinct error_category) as bigint) as n_categories,
        cast(count(distinct component) as bigint) as n_components
    from events
    group by error_family

),

category_counts as (

    select
        error_family,
        error_category,
        row_number() over (
            partition by error_family
            order by count(*) desc, error_category
        ) as category_rank
    from events
    group by error_family, error_category

),

component_counts as (

    select
        error_family,
        component,
        row_number() over (
            partition by error_family
            order by count(*) desc, component
        ) as component_rank
    from events
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
