-- The same operational tables in a DuckDB file: the embedded default source.
-- Payload columns are VARCHAR holding JSON text (DuckDB's JSON type is a VARCHAR alias), so a
-- broken payload can exist here, as it can in environments whose payload column is text.
create table if not exists system_events (
    id          varchar primary key default (uuid()::varchar),
    event_type  varchar not null,
    event_data  varchar,
    metadata    varchar,
    severity    varchar,
    message     varchar,
    component   varchar,
    "timestamp" timestamptz default current_timestamp,
    created_at  timestamptz default current_timestamp
);

create table if not exists job_heartbeats (
    job_name             varchar primary key,
    last_success         timestamptz,
    last_failure         timestamptz,
    last_run_status      varchar,
    last_error           varchar,
    consecutive_failures integer not null default 0,
    updated_at           timestamptz not null default current_timestamp
);

create sequence if not exists cgmc_id_seq;
create table if not exists content_generation_metadata_comprehensive (
    id                bigint primary key default nextval('cgmc_id_seq'),
    decision_id       varchar unique,
    decision_type     varchar,
    status            varchar,
    content           varchar,
    generator_name    varchar,
    topic             varchar,
    predicted_er      double,
    quality_score     double,
    scheduled_at      timestamptz,
    posted_at         timestamptz,
    tweet_id          varchar,
    thread_tweet_ids  varchar,
    target_tweet_id   varchar,
    skip_reason       varchar,
    error_message     varchar,
    features          varchar,
    is_test_post      boolean default false,
    created_at        timestamptz not null default current_timestamp,
    updated_at        timestamptz not null default current_timestamp
);

-- The code reaches the decisions through this view in most places.
create or replace view content_metadata as
    select * from content_generation_metadata_comprehensive;

create table if not exists posting_attempts (
    id              varchar primary key default (uuid()::varchar),
    job_type        varchar not null default 'reply',
    decision_id     varchar,
    target_tweet_id varchar,
    tweet_id        varchar,
    status          varchar not null,
    error_message   varchar,
    metrics         varchar,
    created_at      timestamptz not null default current_timestamp
);

create sequence if not exists msr_id_seq;
create table if not exists metrics_scraper_runs (
    id             bigint primary key default nextval('msr_id_seq'),
    run_at         timestamptz not null default current_timestamp,
    runner_mode    boolean,
    status         varchar,
    eligible_count integer,
    scraped_count  integer,
    updated_count  integer,
    skipped_count  integer,
    failed_count   integer,
    duration_ms    integer,
    skip_reason    varchar,
    error_message  varchar
);
