-- The owner's add_job_status_field migration. Rows that exist when it runs
-- take the default and become pending_review.

-- +goose Up
ALTER TABLE jobs ADD COLUMN status TEXT NOT NULL DEFAULT 'pending_review';
ALTER TABLE jobs ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending_review', 'in_review', 'reviewed', 'archived'));

-- +goose Down
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs DROP COLUMN updated_at;
ALTER TABLE jobs DROP COLUMN status;
