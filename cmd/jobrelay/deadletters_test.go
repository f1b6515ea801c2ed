package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
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
	deadKey := pl.stream + ":dead"
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
