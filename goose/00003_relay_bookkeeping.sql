-- What the relay and the consumers need to be exact and fast.

-- +goose Up
ALTER TABLE jobs
    ADD COLUMN stream_id   text,            -- entry ID in the review stream (the task id)
    ADD COLUMN enqueued_at timestamptz,     -- when the relay published the current attempt
    ADD COLUMN attempts    integer NOT NULL DEFAULT 0,  -- publish attempts so far
    ADD COLUMN last_error  text;            -- the latest handler or relay error

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending_review', 'in_review', 'reviewed', 'archived', 'failed'));

-- The relay claims the oldest pending rows; the index holds only those, so it
-- stays small however large the table grows.
CREATE INDEX jobs_pending_review_created_at_idx ON jobs (created_at)
    WHERE status = 'pending_review';

-- The reaper looks for in_review rows published long ago.
CREATE INDEX jobs_in_review_enqueued_at_idx ON jobs (enqueued_at)
    WHERE status = 'in_review';

-- Wake-ups: a row that becomes pending_review notifies jobrelay_pending_review
-- with the schema name as payload, so relays of other schemas in the same
-- database can ignore it. PostgreSQL delivers it at COMMIT and folds identical
-- notifications of one transaction into one.
-- +goose StatementBegin
CREATE FUNCTION jobs_notify_pending_review() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobrelay_pending_review', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION jobs_notify_inserted_pending_review() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE status = 'pending_review') THEN
        PERFORM pg_notify('jobrelay_pending_review', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- One call per INSERT statement, however many rows it adds (COPY, multi-row
-- INSERT), instead of one per row.
CREATE TRIGGER jobs_notify_inserted_pending_review
    AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted_pending_review();

-- Rows sent back to pending_review (reaper, retry, the application). The WHEN
-- clause keeps the relay's own updates to in_review from calling anything.
CREATE TRIGGER jobs_notify_updated_pending_review
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.status = 'pending_review' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION jobs_notify_pending_review();

-- +goose Down
DROP TRIGGER jobs_notify_updated_pending_review ON jobs;
DROP TRIGGER jobs_notify_inserted_pending_review ON jobs;
DROP FUNCTION jobs_notify_inserted_pending_review();
DROP FUNCTION jobs_notify_pending_review();
DROP INDEX jobs_in_review_enqueued_at_idx;
DROP INDEX jobs_pending_review_created_at_idx;
-- The older check does not know 'failed': such jobs go back to review.
UPDATE jobs SET status = 'pending_review' WHERE status = 'failed';
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending_review', 'in_review', 'reviewed', 'archived'));
ALTER TABLE jobs
    DROP COLUMN last_error,
    DROP COLUMN attempts,
    DROP COLUMN enqueued_at,
    DROP COLUMN stream_id;
