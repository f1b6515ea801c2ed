package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// partitionedJobsSQL is how an application creates jobs range-partitioned
// by created_at before jobrelay's migrations: the primary key includes the
// partition key, as PostgreSQL requires, and migration 1 then leaves the
// table as it is.
const partitionedJobsSQL = `
CREATE TABLE jobs (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    site        text,
    job_url     text,
    title       text,
    company     text,
    location    text,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE jobs_older PARTITION OF jobs FOR VALUES FROM (MINVALUE) TO (date_trunc('day', now()) - interval '7 days');
CREATE TABLE jobs_last_week PARTITION OF jobs FOR VALUES FROM (date_trunc('day', now()) - interval '7 days') TO (date_trunc('day', now()) + interval '1 day');
CREATE TABLE jobs_later PARTITION OF jobs DEFAULT;`

// Issue 11, item 5: jobs may be range-partitioned by created_at. The
// migrations apply to it (jobrelay run migrates first), the NOTIFY
// triggers fire for rows inserted through the parent and for rows sent
// back to pending_review, claims lock rows across partitions, and status
// and the archiver work on it.
func TestPartitionedJobsTable(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	schema := testenv.NewEmptySchema(t)
	_, err := schema.Pool.Exec(ctx, partitionedJobsSQL)
	require.NoError(t, err)
	stream := testenv.Stream(t, testenv.NewRedis(t))
	pl := &pipeline{schema: schema, stream: stream,
		env: testenv.ProcessEnv(schema.URL, testenv.RedisURL(), stream, "POLL_INTERVAL=1h", "CONCURRENCY=16")}
	dir := t.TempDir()

	// The poll is an hour away: only notifications move jobs.
	p := start(t, dir, pl.env, "run")
	require.Eventually(t, func() bool { return len(p.Logged("consumer: started")) == 1 && len(p.Logged("relay: started")) == 1 },
		time.Minute, 5*time.Millisecond)
	require.Len(t, p.Logged("applied 6 migrations"), 1, "every migration applies to the partitioned table")
	var kind string
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'jobs'::regclass`).Scan(&kind))
	require.Equal(t, "p", kind, "still partitioned")

	code, out := runBinary(t, dir, pl.env, "seed", "-n", "2000")
	require.Zero(t, code, out)
	_, err = schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, company, site, job_url, created_at)
SELECT 'Old job ' || i, 'Acme', 'linkedin', 'https://jobs.example.com/old/' || i, now() - interval '30 days' - i * interval '1 minute'
FROM generate_series(1, 300) AS i`)
	require.NoError(t, err)
	reviewed := func() int64 { return counts(t, pl)[db.StatusReviewed] }
	require.Eventually(t, func() bool { return reviewed() == 2300 }, 2*time.Minute, 10*time.Millisecond)

	var older int
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs_older WHERE status = 'reviewed'`).Scan(&older))
	require.Equal(t, 300, older, "the old jobs live in their own partition")

	// A job sent back to pending_review (retry) wakes the relay through
	// the row trigger, cloned onto each partition.
	_, err = schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'failed' WHERE id IN (SELECT id FROM jobs_older LIMIT 5)`)
	require.NoError(t, err)
	code, out = runBinary(t, dir, pl.env, "retry", "--failed")
	require.Zero(t, code, out)
	require.Eventually(t, func() bool { return reviewed() == 2300 }, 2*time.Minute, 10*time.Millisecond)

	// Retention across partitions.
	_, err = schema.Pool.Exec(ctx, `UPDATE jobs SET updated_at = now() - interval '40 days' WHERE created_at < now() - interval '7 days'`)
	require.NoError(t, err)
	code, out = runBinary(t, dir, pl.env, "archive", "--older-than", "30d")
	require.Zero(t, code, out)
	require.Contains(t, out, "300 reviewed job(s) archived")

	code, out = runBinary(t, dir, pl.env, "status")
	require.Zero(t, code, out)
	require.Regexp(t, `(?m)^reviewed\s+2000\s`, out)
	require.Regexp(t, `(?m)^archived\s+300\s`, out)
	info, err := testenv.NewRedis(t).XInfoStream(ctx, stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 2305, info.EntriesAdded, "one entry per job and attempt")
}
