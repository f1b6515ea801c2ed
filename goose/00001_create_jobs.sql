-- The application's table of scraped job postings. It usually exists before
-- jobrelay does, so it is created only when absent and never dropped.

-- +goose Up
CREATE TABLE IF NOT EXISTS jobs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site        text,
    job_url     text,
    title       text,
    company     text,
    location    text,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
-- Nothing: jobs may predate jobrelay and holds the application's data, so
-- migrating down never drops it.
