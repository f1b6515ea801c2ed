package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/inspect"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

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
