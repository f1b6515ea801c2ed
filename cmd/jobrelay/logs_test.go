package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Item 12: with LOG_FORMAT=json, every line on stderr is JSON, while Redis
// goes away (go-redis's own log lines included), for a failing command's
// last word, and for migrations.
func TestJSONLogsUnderTrouble(t *testing.T) {
	t.Parallel()
	schema := testenv.NewEmptySchema(t)
	srv := testenv.StartRedisServer(t)
	requirePass := func() {
		require.NoError(t, srv.Client().ConfigSet(ctxT(t), "requirepass", "Secret-Pass12").Err())
	}
	requirePass()
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	u.User = url.UserPassword("", "Secret-Pass12")
	env := []string{"DATABASE_URL=" + schema.URL, "REDIS_URL=" + u.String(), "JOB_REVIEW_QUEUE_NAME=json_test",
		"METRICS_ADDR=127.0.0.1:0", "LOG_FORMAT=json", "LOG_LEVEL=debug", "PATH=" + os.Getenv("PATH")}
	dir := t.TempDir()

	code, stderr := runBinaryStderr(t, dir, env, "migrate", "up")
	require.Zero(t, code, stderr)
	requireJSONLines(t, stderr)

	p := start(t, dir, env, "run")
	require.Eventually(t, func() bool { return len(p.Logged("relay: started")) == 1 }, time.Minute, 5*time.Millisecond)
	srv.Stop()
	_, err = db.InsertJob(ctxT(t), schema.Pool, db.NewJob{Title: "while Redis is down"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(p.Logged("go-redis:")) > 0 }, time.Minute, 10*time.Millisecond,
		"go-redis's own lines go through slog")
	srv.Start()
	requirePass()
	require.Eventually(t, func() bool {
		var n int64
		err := schema.Pool.QueryRow(ctxT(t), `SELECT count(*) FROM jobs WHERE status = 'reviewed'`).Scan(&n)
		return err == nil && n == 1
	}, time.Minute, 10*time.Millisecond)
	p.Signal(syscall.SIGTERM)
	require.Zero(t, p.Wait(time.Minute))
	lines := requireJSONLines(t, p.Output())
	// Failed dials are Debug: the component whose call failed logs it
	// (redisLogger), so an outage is not a storm.
	for _, l := range p.Logged("go-redis:") {
		require.Contains(t, []any{"WARN", "DEBUG"}, l["level"])
	}
	require.NotEmpty(t, lines)
	require.NotContains(t, p.Output(), "Secret-Pass12")

	// A command that fails says so in JSON.
	bad := append(withoutVar(env, "REDIS_URL"), "REDIS_URL=redis://127.0.0.1:"+closedPort(t)+"/0")
	code, stderr = runBinaryStderr(t, dir, bad, "status")
	require.NotZero(t, code)
	lines = requireJSONLines(t, stderr)
	require.Equal(t, "ERROR", lines[len(lines)-1]["level"])
	require.Contains(t, lines[len(lines)-1]["msg"], "connection refused")
}

// Item 12: two SIGTERMs 50 ms apart, as GNU timeout may send, stop
// gracefully: the handler in flight finishes and its job is reviewed.
func TestRepeatedSignalWithinASecondStopsGracefully(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	_, err := db.InsertJob(ctxT(t), pl.schema.Pool, db.NewJob{Title: "a review in flight"})
	require.NoError(t, err)
	gate := filepath.Join(t.TempDir(), "finish")
	env := append(slices.Clone(pl.env), "HANDLER=exec:while [ ! -e "+gate+" ]; do sleep 0.02; done", "SHUTDOWN_TIMEOUT=1h")
	p := start(t, t.TempDir(), env, "run")
	rdb := testenv.NewRedis(t)
	require.Eventually(t, func() bool {
		pending, err := rdb.XPending(ctxT(t), pl.stream, "job_review_workers").Result()
		return err == nil && pending.Count == 1
	}, time.Minute, 5*time.Millisecond, "the handler is running")

	p.Signal(syscall.SIGTERM)
	time.Sleep(50 * time.Millisecond) // the scenario itself: a repeat 50 ms later
	p.Signal(syscall.SIGTERM)
	require.Eventually(t, func() bool { return len(p.Logged("signal again")) == 1 || p.Exited() }, time.Minute, 5*time.Millisecond)
	require.False(t, p.Exited(), "the repeat aborted: %s", p.Output())
	require.NoError(t, os.WriteFile(gate, nil, 0o600))

	require.Zero(t, p.Wait(time.Minute))
	require.Empty(t, p.Logged("consumer: aborted"))
	require.Equal(t, int64(1), counts(t, pl)[db.StatusReviewed], "the job in flight is recorded")
}

// The JSON handler that go-redis's lines go through.
func TestRedisLogGoesThroughSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := &redisLogger{l: slog.New(slog.NewJSONHandler(&buf, nil)), seen: map[string]time.Time{}}
	l.Printf(context.Background(), "redis: sentinel: GetMasterAddrByName addr=%s, master=%q failed: %v", "10.0.0.1:26379", "m", errors.New("refused"))
	// Its repeats are Debug, which this handler drops; so are failed dials
	// (the caller logs its error) and the calls our contexts ended.
	l.Printf(context.Background(), "redis: sentinel: GetMasterAddrByName addr=%s, master=%q failed: %v", "10.0.0.1:26379", "m", errors.New("refused"))
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, errors.New("refused"))
	l.Printf(context.Background(), "redis: sentinel: GetMasterAddrByName addr=x, master=%q failed: %v", "m", context.Canceled)
	sc := bufio.NewScanner(&buf)
	require.True(t, sc.Scan())
	var m map[string]any
	require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
	require.Equal(t, "WARN", m["level"])
	require.Equal(t, `go-redis: sentinel: GetMasterAddrByName addr=10.0.0.1:26379, master="m" failed: refused`, m["msg"])
	require.False(t, sc.Scan())
}
