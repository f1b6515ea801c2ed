package main

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func counts(t *testing.T, pl *pipeline) map[string]int64 {
	t.Helper()
	c, err := db.CountByStatus(ctxT(t), pl.schema.Pool)
	require.NoError(t, err)
	return c
}

func TestSeedThenRelayOnce(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	dir := t.TempDir()
	code, out := runBinary(t, dir, pl.env, "seed", "-n", "2500")
	require.Zero(t, code, out)
	require.Contains(t, out, "inserted 2500 jobs")

	code, out = runBinary(t, dir, pl.env, "relay", "--once", "--batch-size", "1000")
	require.Zero(t, code, out)
	require.Contains(t, out, `"msg":"relay: nothing left pending; exiting"`)
	require.Contains(t, out, `"num_relayed":2500`)
	require.Contains(t, out, `"msg":"Found 1000 jobs pending review"`)
	require.Equal(t, int64(2500), counts(t, pl)[db.StatusInReview])

	rdb := testenv.NewRedis(t)
	n, err := rdb.XLen(ctxT(t), pl.stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 2500, n)
}

func TestRunReviewsAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	dir := t.TempDir()
	p := start(t, dir, append(pl.env, "LOG_LEVEL=info"), "run")
	require.Eventually(t, func() bool { return len(p.Logged("relay: started")) == 1 }, time.Minute, 5*time.Millisecond)

	code, out := runBinary(t, dir, pl.env, "seed", "-n", "300")
	require.Zero(t, code, out)
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusReviewed] == 300 }, time.Minute, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(p.Logged("Processing job review")) == 300 }, time.Minute, 10*time.Millisecond,
		"the log handler logs each job")

	p.Signal(syscall.SIGTERM)
	require.Zero(t, p.Wait(time.Minute))
	require.Len(t, p.Logged("relay: stopped"), 1)
	require.Len(t, p.Logged("consumer: stopped"), 1)
}

func TestRunStopsMidDrainWithoutLosingWork(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	dir := t.TempDir()
	code, out := runBinary(t, dir, pl.env, "seed", "-n", "20000")
	require.Zero(t, code, out)
	p := start(t, dir, pl.env, "relay")
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusInReview] >= 1000 }, time.Minute, time.Millisecond)
	p.Signal(syscall.SIGINT)
	require.Zero(t, p.Wait(time.Minute))

	// What was committed is in the stream, once; the rest is still pending.
	c := counts(t, pl)
	require.Equal(t, int64(20000), c[db.StatusInReview]+c[db.StatusPendingReview])
	rdb := testenv.NewRedis(t)
	n, err := rdb.XLen(ctxT(t), pl.stream).Result()
	require.NoError(t, err)
	require.Equal(t, c[db.StatusInReview], n)
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	schema := testenv.NewEmptySchema(t)
	env := []string{"DATABASE_URL=" + schema.URL, "PATH=/usr/bin:/bin"}
	dir := t.TempDir()

	code, out := runBinary(t, dir, env, "migrate", "status")
	require.Zero(t, code, out)
	require.Equal(t, 6, strings.Count(out, "pending"), out)

	code, out = runBinary(t, dir, env, "migrate", "up")
	require.Zero(t, code, out)
	require.Contains(t, out, "database version: 6")

	code, out = runBinary(t, dir, env, "migrate", "down")
	require.Zero(t, code, out)
	require.Contains(t, out, "00006_reviewed_index.sql")
	require.Contains(t, out, "database version: 5")
	code, out = runBinary(t, dir, env, "migrate", "down")
	require.Zero(t, code, out)
	require.Contains(t, out, "00005_priority_tenant.sql")
	require.Contains(t, out, "database version: 4")
	code, out = runBinary(t, dir, env, "migrate", "down")
	require.Zero(t, code, out)
	require.Contains(t, out, "00004_job_stream.sql")
	require.Contains(t, out, "database version: 3")
	code, out = runBinary(t, dir, env, "migrate", "down")
	require.Zero(t, code, out, "no job is in_review: no --force needed")
	require.Contains(t, out, "00003_relay_bookkeeping.sql")
	require.Contains(t, out, "database version: 2")

	code, out = runBinary(t, dir, env, "migrate", "down-to", "0")
	require.Zero(t, code, out)
	require.Contains(t, out, "database version: 0")

	code, out = runBinary(t, dir, env, "migrate", "up")
	require.Zero(t, code, out)
	require.Contains(t, out, "database version: 6")
	code, out = runBinary(t, dir, env, "migrate", "status")
	require.Zero(t, code, out)
	require.NotContains(t, out, "pending")
}

func TestRetryCommand(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	var ids []string
	for range 3 {
		id, err := db.InsertJob(ctx, pl.schema.Pool, db.NewJob{Title: "t"})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	_, err := pl.schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'failed', attempts = 5, last_error = 'boom'`)
	require.NoError(t, err)
	dir := t.TempDir()

	code, out := runBinary(t, dir, pl.env, "retry", "--failed", "--job", ids[0])
	require.Zero(t, code, out)
	require.Contains(t, out, "1 failed job(s) sent back to pending_review")
	code, out = runBinary(t, dir, pl.env, "retry", "--failed", "--job", ids[0])
	require.Equal(t, 1, code, "no longer failed")
	require.Contains(t, out, "no failed job with that ID")
	code, out = runBinary(t, dir, pl.env, "retry", "--failed")
	require.Zero(t, code, out)
	require.Contains(t, out, "2 failed job(s)")

	var attempts int
	var lastErr *string
	require.NoError(t, pl.schema.Pool.QueryRow(ctx, `SELECT max(attempts), max(last_error) FROM jobs WHERE status = 'pending_review'`).Scan(&attempts, &lastErr))
	require.Equal(t, 5, attempts, "attempts kept")
	require.Nil(t, lastErr, "last_error cleared")
	require.Equal(t, int64(3), counts(t, pl)[db.StatusPendingReview])
}

func TestSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	_, err := db.InsertJob(ctxT(t), pl.schema.Pool, db.NewJob{Title: "a slow review"})
	require.NoError(t, err)
	env := append(slices.Clone(pl.env), "HANDLER=exec:sleep 60", "SHUTDOWN_TIMEOUT=1h")
	p := start(t, t.TempDir(), env, "run")
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusInReview] == 1 }, time.Minute, 5*time.Millisecond)
	rdb := testenv.NewRedis(t)
	require.Eventually(t, func() bool {
		pending, err := rdb.XPending(ctxT(t), pl.stream, "job_review_workers").Result()
		return err == nil && pending.Count == 1
	}, time.Minute, 5*time.Millisecond, "the handler is running")

	first := time.Now()
	p.Signal(syscall.SIGTERM) // waits for the handler, up to SHUTDOWN_TIMEOUT
	require.Eventually(t, func() bool { return len(p.Logged("consumer: stopping")) == 1 }, time.Minute, 5*time.Millisecond)
	// A repeat within a second of the first is the same request (GNU
	// timeout); a second signal after that stops now.
	var aborted time.Time
	require.Eventually(t, func() bool {
		if len(p.Logged("consumer: aborted")) == 1 {
			return true
		}
		aborted = time.Now()
		p.Signal(syscall.SIGTERM)
		return false
	}, 30*time.Second, 100*time.Millisecond)
	require.GreaterOrEqual(t, aborted.Sub(first), time.Second, "not before a second has passed")
	require.Zero(t, p.Wait(30*time.Second))
	require.Less(t, time.Since(aborted), 20*time.Second)
	require.Len(t, p.Logged("consumer: aborted"), 1)
	require.Equal(t, int64(1), counts(t, pl)[db.StatusInReview], "left for another consumer, not failed")
}

func TestTLSThroughTheURLs(t *testing.T) {
	t.Parallel()
	common := &commonConfig{
		dbConfig: dbConfig{DatabaseURL: "postgres://app:secret@db.internal:5432/jobs?sslmode=verify-full"},
		RedisURL: "rediss://:secret@cache.internal:6380/0",
	}
	cl, err := openClients(ctxT(t), common, 2, nil)
	require.NoError(t, err)
	defer cl.Close()
	require.NotNil(t, cl.rdb.(*redis.Client).Options().TLSConfig, "rediss:// connects with TLS")
	require.Equal(t, "cache.internal", cl.rdb.(*redis.Client).Options().TLSConfig.ServerName)
	require.NotNil(t, cl.pool.Config().ConnConfig.TLSConfig, "sslmode=verify-full connects with TLS")
	require.False(t, cl.pool.Config().ConnConfig.TLSConfig.InsecureSkipVerify)
}
