package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/health"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// scrape reads a metrics page into "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	out["__body__"] = float64(len(body))
	return out
}

// metricsAddr waits until p logs the address it serves /metrics on, and
// returns it; p exiting first fails the test.
func metricsAddr(t *testing.T, p *proc) string {
	t.Helper()
	require.Eventually(t, func() bool { return len(p.Logged("serving /metrics")) == 1 || p.Exited() }, time.Minute, 5*time.Millisecond)
	require.False(t, p.Exited(), "exited before serving /metrics: %s", p.Output())
	return p.Logged("serving /metrics")[0]["addr"].(string)
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	env := append([]string{}, pl.env...)
	env[0] = strings.Replace(env[0], "postgres@", "postgres:hunter2@", 1) // trust auth ignores it
	env = append(env, "METRICS_ADDR=127.0.0.1:0", "MAX_DELIVERIES=2", "RECLAIM_IDLE=100ms",
		`HANDLER=exec:! grep -q poison`) // the review fails for the poison job
	p := start(t, t.TempDir(), env, "run")
	addr := metricsAddr(t, p)

	for i := range 21 {
		title := "Engineer " + strconv.Itoa(i)
		if i == 20 {
			title = "poison pill"
		}
		_, err := db.InsertJob(ctx, pl.schema.Pool, db.NewJob{Title: title, Company: "Acme"})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		c := counts(t, pl)
		return c[db.StatusReviewed] == 20 && c[db.StatusFailed] == 1
	}, time.Minute, 10*time.Millisecond)

	var m map[string]float64
	require.Eventually(t, func() bool {
		m = scrape(t, "http://"+addr+"/metrics")
		return m[`jobrelay_consumer_jobs_total{result="dead_lettered"}`] == 1
	}, time.Minute, 10*time.Millisecond)
	for name, want := range map[string]float64{
		`jobrelay_relay_jobs_relayed_total`:                    21,
		`jobrelay_consumer_jobs_total{result="reviewed"}`:      20,
		`jobrelay_consumer_jobs_total{result="retried"}`:       1,
		`jobrelay_consumer_jobs_total{result="dead_lettered"}`: 1,
		`jobrelay_consumer_handler_duration_seconds_count`:     22,
		`jobrelay_relay_errors_total{kind="publish"}`:          0,
		`jobrelay_relay_listening`:                             1,
		`jobrelay_relay_paused`:                                0,
		`jobrelay_relay_jobs_reaped_total`:                     0,
		`jobrelay_relay_backpressure_pauses_total`:             0,
		`jobrelay_consumer_reclaimed_total`:                    1,
		`jobrelay_relay_cycles_total{result="published"}`:      m[`jobrelay_relay_cycles_total{result="published"}`],
		`jobrelay_stream_trimmed_entries_total`:                m[`jobrelay_stream_trimmed_entries_total`],
		`jobrelay_consumer_errors_total{kind="finish"}`:        0,
		`jobrelay_relay_batch_size_count`:                      m[`jobrelay_relay_cycles_total{result="published"}`],
		`jobrelay_relay_cycle_duration_seconds_count`:          m[`jobrelay_relay_cycles_total{result="published"}`],
		// The pipeline gauges are exported; their values (the snapshot
		// taken at start races the inserts) are tested in inspect.
		`jobrelay_jobs_pending`:                  m[`jobrelay_jobs_pending`],
		`jobrelay_dead_letter_length`:            m[`jobrelay_dead_letter_length`],
		`jobrelay_pipeline_snapshot_age_seconds`: m[`jobrelay_pipeline_snapshot_age_seconds`],
		`jobrelay_consumer_in_flight`:            0,
	} {
		got, ok := m[name]
		require.True(t, ok, "%s is not exported", name)
		require.Equal(t, want, got, name)
	}
	require.GreaterOrEqual(t, m[`jobrelay_relay_cycles_total{result="published"}`], 1.0)

	// No secret in the metrics, nor in the logs.
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NotContains(t, string(body), "hunter2")
	require.NotContains(t, p.Output(), "hunter2")

	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
	}
	code, out := runBinary(t, t.TempDir(), append(pl.env, "METRICS_ADDR="+addr), "healthcheck")
	require.Zero(t, code, out)
	require.Contains(t, out, "ok")
}

func TestReadyzFollowsTheServers(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	schema := testenv.NewSchema(t)
	srv := testenv.StartRedisServer(t)
	proxy := testenv.StartProxy(t, testenv.PostgresAddr(t))
	common := &commonConfig{dbConfig: dbConfig{DatabaseURL: schema.ThroughProxy(t, proxy)}, RedisURL: srv.URL(), Stream: "job_review"}
	cl, err := openClients(ctx, common, 4, nil)
	require.NoError(t, err)
	defer cl.Close()
	r, err := relay.New(cl.pool, cl.rdb, relay.Config{PollInterval: time.Hour, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	h := health.NewServer()
	serverChecks(h, cl)
	h.Ready("listen", func(context.Context) error { return r.Ready() })
	web := httptest.NewServer(h.Handler())
	defer web.Close()
	readyz := func() (int, string) {
		resp, err := http.Get(web.URL + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ready := func() bool { code, _ := readyz(); return code == http.StatusOK }
	require.Eventually(t, ready, time.Minute, 10*time.Millisecond)

	srv.Stop()
	require.Eventually(t, func() bool { return !ready() }, time.Minute, 10*time.Millisecond)
	_, body := readyz()
	require.Contains(t, body, "redis:")
	srv.Start()
	require.Eventually(t, ready, time.Minute, 10*time.Millisecond)

	proxy.Down()
	require.Eventually(t, func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "postgres:") && strings.Contains(body, "relay:")
	}, time.Minute, 10*time.Millisecond)
	proxy.Up()
	require.Eventually(t, ready, time.Minute, 10*time.Millisecond)

	resp, err := http.Get(web.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestStatusShowsEachPartition: with STREAM_PARTITIONS, status sums the
// partitions and shows each, and names a retired partition that still
// holds jobs.
func TestStatusShowsEachPartition(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	rdb := testenv.NewRedis(t)
	_, err := pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title) SELECT 'published ' || i FROM generate_series(1, 30) i`)
	require.NoError(t, err)
	r, err := relay.New(pl.schema.Pool, rdb, relay.Config{Stream: pl.stream, Partitions: 3, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	_, err = r.Drain(ctx)
	require.NoError(t, err)

	env := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream,
		"STREAM_PARTITIONS": "3"}
	code, stdout, stderr := runInProcess(t, env, "status", "--json")
	require.Zero(t, code, stderr)
	var got inspect.Snapshot
	require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
	require.EqualValues(t, 30, got.Stream.Length)
	require.Len(t, got.Partitions, 3)
	var sum int64
	for i, p := range got.Partitions {
		require.Equal(t, pl.stream+":"+strconv.Itoa(i), p.Stream.Name)
		sum += p.Stream.Length
	}
	require.EqualValues(t, 30, sum)

	// Down to 2 partitions: the third is listed while its jobs are in_review.
	env["STREAM_PARTITIONS"] = "2"
	code, stdout, _ = runInProcess(t, env, "status")
	require.Zero(t, code)
	require.Contains(t, stdout, "PARTITION")
	require.Regexp(t, `(?m)^`+regexp.QuoteMeta(pl.stream+":1")+`\s+\d+`, stdout)
	require.Contains(t, stdout, "in stream "+pl.stream+":2")
	require.Contains(t, stdout, "a partition no more")
}

func TestStatus(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	rdb := testenv.NewRedis(t)
	// A known state: 5 jobs published, 2 of them delivered and pending, 3
	// unread; 2 jobs pending_review for an hour; 1 failed and dead-lettered.
	_, err := pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title) SELECT 'published ' || i FROM generate_series(1, 5) i`)
	require.NoError(t, err)
	r, err := relay.New(pl.schema.Pool, rdb, relay.Config{Stream: pl.stream, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	_, err = r.Drain(ctx)
	require.NoError(t, err)
	_, err = pl.schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, created_at) VALUES ('waiting', now() - interval '1 hour'), ('waiting too', now() - interval '30 minutes');
INSERT INTO jobs (title, status, last_error) VALUES ('poison', 'failed', 'boom')`)
	require.NoError(t, err)
	require.NoError(t, rdb.XGroupCreate(ctx, pl.stream, "job_review_workers", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "job_review_workers", Consumer: "worker-1",
		Streams: []string{pl.stream, ">"}, Count: 2}).Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{" + pl.stream + "}:dead", Values: []any{"job_id", "x", "error", "boom"}}).Err())

	env := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	code, stdout, stderr := runInProcess(t, env, "status", "--json")
	require.Zero(t, code, stderr)
	var got struct {
		inspect.Snapshot
		Healthy  bool     `json:"healthy"`
		Problems []string `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
	require.Equal(t, map[string]int64{"pending_review": 2, "in_review": 5, "reviewed": 0, "failed": 1, "archived": 0}, got.Jobs)
	require.EqualValues(t, 2, got.Backlog.Pending)
	require.InDelta(t, time.Hour.Seconds(), got.Backlog.OldestPendingAgeSecs, 60)
	require.True(t, got.Stream.Exists)
	require.EqualValues(t, 5, got.Stream.Length)
	require.EqualValues(t, 5, got.Stream.EntriesAdded)
	require.NotEmpty(t, got.Stream.FirstID)
	require.Len(t, got.Groups, 1)
	g := got.Groups[0]
	require.Equal(t, "job_review_workers", g.Name)
	require.EqualValues(t, 2, g.Pending)
	require.EqualValues(t, 3, g.Lag)
	require.Equal(t, got.Stream.FirstID, g.OldestPendingID)
	require.Len(t, g.Consumers, 1)
	require.Equal(t, "worker-1", g.Consumers[0].Name)
	require.EqualValues(t, 2, g.Consumers[0].Pending)
	require.EqualValues(t, 1, got.DeadLetters)
	require.False(t, got.Healthy)
	require.Len(t, got.Problems, 2, "the hour-old pending job and the dead letter")

	// The table for people.
	code, stdout, _ = runInProcess(t, env, "status")
	require.Zero(t, code)
	for _, want := range []string{"pending_review  2", "created 1h", "job_review_workers", "worker-1", "DEAD LETTERS  1"} {
		require.Contains(t, stdout, want)
	}
	require.Regexp(t, `(?m)^`+regexp.QuoteMeta(pl.stream)+`\s+5\s+5\s`, stdout)

	// --check: exit 1 with the reasons; 0 within looser thresholds.
	code, stdout, _ = runInProcess(t, env, "status", "--check")
	require.Equal(t, 1, code)
	require.Contains(t, stdout, "UNHEALTHY: the oldest pending job waits for 1h")
	require.Contains(t, stdout, "UNHEALTHY: 1 dead letters")
	code, stdout, _ = runInProcess(t, env, "status", "--check", "--max-pending-age", "2h", "--max-dead-letters", "1")
	require.Zero(t, code, stdout)
	require.Contains(t, stdout, "HEALTHY")
	code, stdout, _ = runInProcess(t, env, "status", "--check", "--max-pending-age", "2h", "--max-dead-letters", "1", "--max-lag", "2")
	require.Equal(t, 1, code)
	require.Contains(t, stdout, "group job_review_workers lags by 3 entries")

	// A server it cannot reach: exit 2.
	bad := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": "redis://127.0.0.1:1/0", "JOB_REVIEW_QUEUE_NAME": pl.stream}
	code, _, stderr = runInProcess(t, bad, "status", "--check")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "connection refused")
}
