package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestMigrateDownRefusesWhileJobsAreInReview(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	env := map[string]string{"DATABASE_URL": schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": testenv.Stream(t, rdb)}
	_, err := schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, status, stream_id, enqueued_at) VALUES ('published', 'in_review', '1-1', now());
INSERT INTO jobs (title) VALUES ('waiting')`)
	require.NoError(t, err)
	version := func() string {
		t.Helper()
		code, stdout, stderr := runInProcess(t, env, "migrate", "status")
		require.Zero(t, code, stderr)
		return stdout
	}
	refused := func(args ...string) {
		t.Helper()
		before := version()
		code, stdout, stderr := runInProcess(t, env, append([]string{"migrate"}, args...)...)
		require.Equal(t, 2, code, "stdout: %s\nstderr: %s", stdout, stderr)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		require.Contains(t, stderr, "1 job is in_review")
		require.Contains(t, stderr, "--force")
		require.Equal(t, before, version(), "nothing rolled back")
	}

	// Rolling back priority and tenant needs no force: the job keeps its
	// entry and its bookkeeping.
	code, stdout, stderr := runInProcess(t, env, "migrate", "down-to", "5")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 5")
	code, stdout, stderr = runInProcess(t, env, "migrate", "down")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 4")

	// Rolling back the stream or the bookkeeping migration is refused,
	// whichever way it is asked for. The migrations after them may go.
	code, stdout, stderr = runInProcess(t, env, "migrate", "down-to", "4")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 4")
	refused("down")
	refused("down-to", "3")
	refused("down-to", "2")
	refused("down-to", "0")
	code, stdout, stderr = runInProcess(t, env, "migrate", "down", "--force")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 3")
	refused("down")

	// Forced, it goes; migrating up again leaves the job in_review without
	// bookkeeping, and status shows it.
	code, stdout, stderr = runInProcess(t, env, "migrate", "down", "--force")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "00003_relay_bookkeeping.sql")
	require.Contains(t, stdout, "database version: 2")
	code, stdout, stderr = runInProcess(t, env, "migrate", "up")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 6")

	code, stdout, stderr = runInProcess(t, env, "status", "--json")
	require.Zero(t, code, stderr)
	var snap inspect.Snapshot
	require.NoError(t, json.Unmarshal([]byte(stdout), &snap), stdout)
	require.EqualValues(t, 1, snap.Backlog.InReview)
	require.EqualValues(t, 1, snap.Backlog.InReviewUntracked)
	require.WithinDuration(t, time.Now(), snap.Backlog.OldestInReviewAt, time.Minute,
		"a job without enqueued_at counts from updated_at in the oldest in_review age")
	code, stdout, stderr = runInProcess(t, env, "status")
	require.Zero(t, code, stderr)
	require.Regexp(t, `(?m)^in_review\s+1\s+published \S+ ago$`, stdout)
	require.Regexp(t, `(?m)^  without a stream entry\s+1\s+re-enqueued by the reaper`, stdout)

	// With no job in_review, migrating down needs no force.
	_, err = schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'reviewed'`)
	require.NoError(t, err)
	code, stdout, stderr = runInProcess(t, env, "migrate", "down-to", "0")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 0")
}

func TestStatusShowsInReviewJobsOfOtherStreams(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	pl := newPipeline(t)
	_, err := pl.schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, status, stream_id, enqueued_at, stream) VALUES
  ('ours', 'in_review', '1-1', now(), $1),
  ('theirs', 'in_review', '1-1', now(), 'other_stream'),
  ('theirs too', 'in_review', '1-2', now(), 'other_stream')`, pl.stream)
	require.NoError(t, err)
	env := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	code, stdout, stderr := runInProcess(t, env, "status")
	require.Zero(t, code, stderr)
	require.Regexp(t, `(?m)^in_review\s+3\s`, stdout)
	require.Regexp(t, `(?m)^  in stream other_stream\s+2\s+reaped by that stream's relays only$`, stdout)
	require.NotContains(t, stdout, "without a stream entry")

	code, stdout, stderr = runInProcess(t, env, "status", "--json")
	require.Zero(t, code, stderr)
	var snap inspect.Snapshot
	require.NoError(t, json.Unmarshal([]byte(stdout), &snap), stdout)
	require.Equal(t, map[string]int64{pl.stream: 1, "other_stream": 2}, snap.Backlog.InReviewByStream)
}

func TestStatusShowsPendingJobsByPriorityAndTenant(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	pl := newPipeline(t)
	env := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	_, err := pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title) VALUES ('plain'), ('plain')`)
	require.NoError(t, err)
	code, stdout, stderr := runInProcess(t, env, "status")
	require.Zero(t, code, stderr)
	require.NotContains(t, stdout, "PRIORITY", "one level: nothing more to show")
	require.NotContains(t, stdout, "TENANT")

	_, err = pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title, priority, tenant) VALUES ('urgent', 10, 'acme'), ('low', -1, 'acme')`)
	require.NoError(t, err)
	code, stdout, stderr = runInProcess(t, env, "status")
	require.Zero(t, code, stderr)
	require.Regexp(t, `(?m)^PRIORITY\s+PENDING\s+OLDEST\n10\s+1\s+created .*\n0\s+2\s+created .*\n-1\s+1\s`, stdout)
	require.Regexp(t, `(?m)^TENANT\s+PENDING\s+OLDEST\n(default\s+2\s+created .*\nacme\s+2|acme\s+2\s+created .*\ndefault\s+2)\s`, stdout)
}
