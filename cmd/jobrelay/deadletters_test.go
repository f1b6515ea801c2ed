package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

func TestRetryFailedTakesTheDeadLettersAlong(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	rdb := testenv.NewRedis(t)
	dir := t.TempDir()
	fail := filepath.Join(dir, "review-service-down")
	require.NoError(t, os.WriteFile(fail, nil, 0o600))
	env := append(append([]string{}, pl.env...), "MAX_DELIVERIES=1", "RECLAIM_IDLE=100ms",
		"HANDLER=exec:if grep -q poison; then test ! -e "+fail+"; fi")
	start(t, dir, env, "run")

	_, err := pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title) VALUES ('poison 1'), ('poison 2'), ('poison 3'), ('fine 1'), ('fine 2')`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c := counts(t, pl)
		return c[db.StatusFailed] == 3 && c[db.StatusReviewed] == 2
	}, time.Minute, 10*time.Millisecond)
	deadKey := "{" + pl.stream + "}:dead"
	require.EqualValues(t, 3, rdb.XLen(ctx, deadKey).Val())

	cli := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	code, stdout, _ := runInProcess(t, cli, "status", "--check")
	require.Equal(t, 1, code)
	require.Contains(t, stdout, "UNHEALTHY: 3 dead letters")

	require.NoError(t, os.Remove(fail)) // the review service is back
	code, stdout, stderr := runInProcess(t, cli, "retry", "--failed")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "3 failed job(s) sent back to pending_review")
	require.Zero(t, rdb.XLen(ctx, deadKey).Val(), "their dead letters went with them")

	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusReviewed] == 5 }, time.Minute, 10*time.Millisecond)
	code, stdout, _ = runInProcess(t, cli, "status", "--check")
	require.Zero(t, code, stdout)
	require.Contains(t, stdout, "HEALTHY")
}

func TestStatusSaysWhatComponentsReport(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	rdb := testenv.NewRedis(t)
	cli := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	code, stdout, _ := runInProcess(t, cli, "status", "--check")
	require.Zero(t, code, stdout)

	// A consumer that died with a problem reported long ago: ignored.
	stale, err := json.Marshal(stream.HealthReport{Problem: "recording results is stalled", Since: time.Now().Add(-time.Hour), ReportedAt: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, stream.HealthKey(pl.stream), "consumer gone-1", stale).Err())
	code, stdout, _ = runInProcess(t, cli, "status", "--check")
	require.Zero(t, code, stdout)

	// A live one.
	require.NoError(t, stream.ReportProblem(ctx, rdb, pl.stream, "consumer busy-2",
		"recording results is stalled: 12 results have waited 45s to be recorded (last error: timeout)", time.Now().Add(-45*time.Second)))
	code, stdout, _ = runInProcess(t, cli, "status", "--check")
	require.Equal(t, 1, code)
	require.Contains(t, stdout, "UNHEALTHY: consumer busy-2: recording results is stalled: 12 results")
	require.Contains(t, stdout, "(since 45s ago)")
	require.NotContains(t, stdout, "gone-1")
	code, stdout, _ = runInProcess(t, cli, "status")
	require.Zero(t, code)
	require.Contains(t, stdout, "PROBLEMS REPORTED")
	require.Contains(t, stdout, "consumer busy-2: recording results is stalled")
	code, stdout, _ = runInProcess(t, cli, "status", "--json")
	require.Zero(t, code)
	var got struct {
		Health   []stream.HealthReport `json:"health"`
		Problems []string              `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Len(t, got.Health, 1)
	require.Equal(t, "consumer busy-2", got.Health[0].Component)
	require.Len(t, got.Problems, 1)

	require.NoError(t, stream.ClearProblem(ctx, rdb, pl.stream, "consumer busy-2"))
	code, stdout, _ = runInProcess(t, cli, "status", "--check")
	require.Zero(t, code, stdout)
}

func TestALateSuccessAfterSIGSTOPWins(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	rdb := testenv.NewRedis(t)
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	env := append(append([]string{}, pl.env...), "RECLAIM_IDLE=200ms", "MAX_DELIVERIES=1",
		"HANDLER=exec:touch "+started+"; sleep 0.5")

	id, err := db.InsertJob(ctx, pl.schema.Pool, db.NewJob{Title: "slow review", Company: "Acme"})
	require.NoError(t, err)
	r, err := relay.New(pl.schema.Pool, rdb, relay.Config{Stream: pl.stream, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	_, err = r.Drain(ctx)
	require.NoError(t, err)

	frozen := start(t, dir, env, "consume")
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, time.Minute, 5*time.Millisecond)
	frozen.Signal(syscall.SIGSTOP) // its handler's command goes on and finishes meanwhile
	t.Cleanup(func() { _ = frozen.Cmd.Process.Signal(syscall.SIGCONT) })

	// Another consumer takes the entry over and dead-letters it.
	start(t, dir, env, "consume")
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusFailed] == 1 }, time.Minute, 5*time.Millisecond)
	require.EqualValues(t, 1, rdb.XLen(ctx, "{"+pl.stream+"}:dead").Val())

	frozen.Signal(syscall.SIGCONT)
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusReviewed] == 1 }, time.Minute, 5*time.Millisecond)
	var lastError *string
	require.NoError(t, pl.schema.Pool.QueryRow(ctx, `SELECT last_error FROM jobs WHERE id = $1`, id).Scan(&lastError))
	require.Nil(t, lastError)
	require.Eventually(t, func() bool { return rdb.XLen(ctx, "{"+pl.stream+"}:dead").Val() == 0 }, time.Minute, 5*time.Millisecond)
}

// TestStatusCheckFlagsJobsInReviewForTooLong: jobs nothing finishes (no
// consumer, a reaper the database refuses, a stream whose deployment is
// gone) must not leave status --check healthy.
func TestStatusCheckFlagsJobsInReviewForTooLong(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	cli := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	_, err := pl.schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, status, stream_id, enqueued_at, stream) VALUES ('gone', 'in_review', '1-1', now() - interval '2 hours', 'other_stream')`)
	require.NoError(t, err)
	code, stdout, _ := runInProcess(t, cli, "status", "--check")
	require.Equal(t, 1, code, stdout)
	require.Contains(t, stdout, "the oldest in_review job has waited 2h0m")
	code, stdout, _ = runInProcess(t, cli, "status", "--check", "--max-in-review-age", "3h")
	require.Zero(t, code, stdout)
}
