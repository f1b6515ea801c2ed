-- Tables of millions. Retention: the archiver (ARCHIVE_AFTER, jobrelay archive) moves reviewed
-- jobs to archived by the time they were reviewed (updated_at), oldest
-- first, in small batches. This partial index holds the reviewed rows
-- only, so each batch reads the oldest few entries instead of the whole
-- table, and archived rows leave it. On a table of millions, build it first
-- without blocking writes (CREATE INDEX CONCURRENTLY with this name and
-- definition, on each partition if jobs is partitioned), and this
-- migration finds it there.

--
-- The failed rows get one too: jobrelay status counts them, and retry
-- --failed finds them, without reading the table.

-- +goose Up
CREATE INDEX IF NOT EXISTS jobs_reviewed_updated_at_idx ON jobs (updated_at)
    WHERE status = 'reviewed';
CREATE INDEX IF NOT EXISTS jobs_failed_updated_at_idx ON jobs (updated_at)
    WHERE status = 'failed';

-- +goose Down
DROP INDEX IF EXISTS jobs_failed_updated_at_idx;
DROP INDEX IF EXISTS jobs_reviewed_updated_at_idx;
