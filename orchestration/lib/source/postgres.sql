-- The bot's operational tables as its migrations leave them (see shared/source-schema.md).
-- Quirks kept on purpose: nullable severity without a working check, payload in event_data
-- or metadata, job_heartbeats upserted in place, decisions updated in place.
-- event_data and metadata are jsonb as the migrations leave them; create_source_schema(payload_type=
-- "json") makes them json, which keeps payloads jsonb refuses (the escape \u0000).
create extension if not exists pgcrypto;

create table if not exists system_events (
    id          uuid primary key default gen_random_uuid(),
    event_type  text not null,
    event_data  jsonb,
    metadata    jsonb,
    severity    text,
    message     text,
    component   text,
    "timestamp" timestamptz default now(),
    created_at  timestamptz default now()
);
create index if not exists idx_system_events_type_created on system_events (event_type, created_at desc);
create index if not exists idx_system_events_severity_created on system_events (severity, created_at desc);
create index if not exists idx_system_events_created on system_events (created_at desc);

create table if not exists job_heartbeats (
    job_name             text primary key,
    last_success         timestamptz,
    last_failure         timestamptz,
    last_run_status      text,
    last_error           text,
    consecutive_failures integer not null default 0,
    updated_at           timestamptz not null default now()
);

create table if not exists content_generation_metadata_comprehensive (
    id                bigserial primary key,
    decision_id       text unique,
    decision_type     text,
    status            text,
    content           text,
    generator_name    text,
    topic             text,
    predicted_er      double precision,
    quality_score     double precision,
    scheduled_at      timestamptz,
    posted_at         timestamptz,
    tweet_id          text,
    thread_tweet_ids  text,
    target_tweet_id   text,
    skip_reason       text,
    error_message     text,
    features          jsonb,
    is_test_post      boolean default false,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);
create index if not exists idx_cgmc_updated on content_generation_metadata_comprehensive (updated_at);

-- The code reaches the decisions through this view in most places (drop table ... cascade drops it).
create or replace view content_metadata as
    select * from content_generation_metadata_comprehensive;

create table if not exists posting_attempts (
    id              uuid primary key default gen_random_uuid(),
    job_type        text not null default 'reply',
    decision_id     text,
    target_tweet_id text,
    tweet_id        text,
    status          text not null,
    error_message   text,
    metrics         jsonb,
    created_at      timestamptz not null default now()
);
create index if not exists idx_posting_attempts_created on posting_attempts (created_at);

create table if not exists metrics_scraper_runs (
    id             bigserial primary key,
    run_at         timestamptz not null default now(),
    runner_mode    boolean,
    status         text,
    eligible_count integer,
    scraped_count  integer,
    updated_count  integer,
    skipped_count  integer,
    failed_count   integer,
    duration_ms    integer,
    skip_reason    text,
    error_message  text
);
create index if not exists idx_metrics_scraper_runs_run_at on metrics_scraper_runs (run_at);
