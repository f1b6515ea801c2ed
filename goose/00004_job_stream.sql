-- The stream each job was last published to, so that deployments with
-- different streams on one database each reap only their own in_review
-- jobs. NULL for rows published before this migration and rows jobrelay did
-- not publish: every relay's reaper looks after those. A nullable column
-- without a default is added without rewriting the table.

-- +goose Up
ALTER TABLE jobs ADD COLUMN stream text;  -- the stream of stream_id

-- +goose Down
ALTER TABLE jobs DROP COLUMN stream;
