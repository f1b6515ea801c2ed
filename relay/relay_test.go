package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

type testBundle struct {
	schema *testenv.Schema
	rdb    *redis.Client
	stream string
	logger *testenv.Logs
	cfg    Config
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	logger, logs := testenv.NewLogs(t)
	return &testBundle{
		schema: testenv.NewSchema(t),
		rdb:    rdb,
		stream: stream,
		logger: logs,
		cfg:    Config{Stream: stream, Logger: logger, PollInterval: time.Hour, MaxStreamLag: -1, MaxMemoryRatio: -1},
	}
}

func (b *testBundle) newRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	r, err := New(b.schema.Pool, b.rdb, cfg)
	require.NoError(t, err)
	return r
}

// seed inserts n sample jobs.
func (b *testBundle) seed(t *testing.T, n int) {
	t.Helper()
	testenv.Seed(t, b.schema.Pool, n)
}

type jobRow struct {
	ID, Status string
	StreamID   *string
	Attempts   int32
	LastError  *string
}

func (b *testBundle) rows(t *testing.T) map[string]jobRow {
	t.Helper()
	rows, err := b.schema.Pool.Query(testenv.Context(t), `SELECT id::text, status, stream_id, attempts, last_error FROM jobs`)
	require.NoError(t, err)
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[jobRow])
	require.NoError(t, err)
	out := make(map[string]jobRow, len(list))
	for _, r := range list {
		out[r.ID] = r
	}
	return out
}

func (b *testBundle) entries(t *testing.T) []redis.XMessage {
	t.Helper()
	msgs, err := b.rdb.XRange(testenv.Context(t), b.stream, "-", "+").Result()
	require.NoError(t, err)
	return msgs
}

// requireExactlyOnce checks the relay's central promise: every in_review job
// has exactly one entry per attempt, its stream_id is that entry, and no
// entry exists for a job that is not in_review. It returns the number of
// in_review jobs.
func (b *testBundle) requireExactlyOnce(t *testing.T) int {
	t.Helper()
	rows := b.rows(t)
	byJob := map[string][]redis.XMessage{}
	for _, m := range b.entries(t) {
		id, _ := m.Values["job_id"].(string)
		byJob[id] = append(byJob[id], m)
	}
	inReview := 0
	for id, r := range rows {
		entries := byJob[id]
		if r.Status != db.StatusInReview {
			require.Empty(t, entries, "job %s is %s but has stream entries", id, r.Status)
			continue
		}
		inReview++
		require.Len(t, entries, 1, "job %s: entries", id)
		require.NotNil(t, r.StreamID)
		require.Equal(t, entries[0].ID, *r.StreamID, "job %s: stream_id", id)
		require.EqualValues(t, 1, r.Attempts)
	}
	require.Len(t, byJob, inReview, "entries for unknown jobs")
	return inReview
}

func TestCycle(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	_, err := b.schema.Pool.Exec(ctx, `
INSERT INTO jobs (site, job_url, title, company, created_at) VALUES
 ('linkedin', 'https://example.com/1', 'Go Developer', 'Acme', now() - interval '3 minutes'),
 ('indeed',   'https://example.com/2', 'Data Engineer', 'Globex', now() - interval '2 minutes'),
 ('otta',     'https://example.com/3', 'SRE', 'Initech', now() - interval '1 minute')`)
	require.NoError(t, err)

	r := b.newRelay(t, b.cfg)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, 3, b.requireExactlyOnce(t))

	// Entries carry the documented fields, oldest job first.
	entries := b.entries(t)
	require.Len(t, entries, 3)
	require.Equal(t, []string{"Go Developer", "Data Engineer", "SRE"},
		[]string{entries[0].Values["title"].(string), entries[1].Values["title"].(string), entries[2].Values["title"].(string)})
	e := entries[0].Values
	require.Equal(t, "linkedin", e["site"])
	require.Equal(t, "Acme", e["company"])
	require.Equal(t, "https://example.com/1", e["job_url"])
	require.Equal(t, "1", e["attempt"])
	enqueued, err := time.Parse(time.RFC3339Nano, e["enqueued_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), enqueued, time.Minute)
	require.Len(t, e, 7)

	var dbEnqueued time.Time
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT enqueued_at FROM jobs WHERE stream_id = $1`, entries[0].ID).Scan(&dbEnqueued))
	require.True(t, dbEnqueued.Equal(enqueued.Truncate(time.Microsecond)), "enqueued_at %v in the table, %v in the entry", dbEnqueued, enqueued)

	// The old poller's log events.
	found := b.logger.Matching("Found 3 jobs pending review")
	require.Len(t, found, 1)
	enq := b.logger.Matching("Enqueued job for review")
	require.Len(t, enq, 3)
	for _, rec := range enq {
		for _, k := range []string{"job_id", "title", "company", "site", "task_id"} {
			require.NotEmpty(t, rec.Attrs[k], "attribute %s of %+v", k, rec)
		}
	}
	require.Equal(t, entries[0].ID, enq[0].Attrs["task_id"])
	require.Len(t, b.logger.Matching("Cycle complete: enqueued 3 jobs for review"), 1)

	// Nothing left: the next cycle claims nothing and logs no "Found".
	n, err = r.Drain(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, b.logger.Matching("jobs pending review"), 1)
}

func TestCycleLogsBigBatchesAtDebug(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 30)
	cfg := b.cfg
	cfg.JobLogLimit = 10
	n, err := b.newRelay(t, cfg).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, n)
	enq := b.logger.Matching("Enqueued job for review")
	require.Len(t, enq, 30)
	for _, rec := range enq {
		require.Equal(t, "DEBUG", rec.Level.String())
	}
}

func TestRollbackWhenRedisRefuses(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 250)
	// The stream key holds a string: every XADD fails with WRONGTYPE.
	require.NoError(t, b.rdb.Set(ctx, b.stream, "not a stream", 0).Err())

	r := b.newRelay(t, b.cfg)
	_, err := r.Drain(ctx)
	require.ErrorContains(t, err, "WRONGTYPE")
	for id, row := range b.rows(t) {
		require.Equal(t, db.StatusPendingReview, row.Status, "job %s", id)
		require.Nil(t, row.StreamID)
		require.Zero(t, row.Attempts)
	}
	require.Equal(t, float64(1), counterValue(t, r.m.Errors.WithLabelValues("publish")))

	// Once Redis accepts again, the same relay (same connection) goes on.
	require.NoError(t, b.rdb.Del(ctx, b.stream).Err())
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 250, n)
	require.Equal(t, 250, b.requireExactlyOnce(t))
}

func TestReplicasRelayEachJobOnce(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	const jobs = 20_000
	b.seed(t, jobs)

	var wg sync.WaitGroup
	var total atomic.Int64
	errs := make(chan error, 3)
	for range 3 {
		r := b.newRelay(t, b.cfg)
		wg.Go(func() {
			n, err := r.Drain(ctx)
			total.Add(int64(n))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, jobs, total.Load())
	require.Equal(t, jobs, b.requireExactlyOnce(t))
}

func TestOnceLeavesNothingPending(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 1234)
	cfg := b.cfg
	cfg.BatchSize = 100
	n, err := b.newRelay(t, cfg).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 1234, n)
	backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
	require.NoError(t, err)
	require.Zero(t, backlog.Pending)
	require.EqualValues(t, 1234, backlog.InReview)
}

// startRelay runs r until the test ends, and waits until it listens.
func startRelay(t *testing.T, r *Relay) (stop func()) {
	t.Helper()
	stop = testenv.Start(t, r.Run)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 5*time.Millisecond, "relay never listened")
	return stop
}

func TestNotifyWakesTheRelay(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.PollInterval = time.Hour // only a notification can wake it in time
	r := b.newRelay(t, cfg)
	startRelay(t, r)
	// The first cycle runs at start; wait for it, so the insert below is
	// picked up by a wake-up, not by that cycle.
	require.Eventually(t, func() bool { return counterValue(t, r.m.Cycles.WithLabelValues("empty")) >= 1 },
		10*time.Second, time.Millisecond)

	for i := range 3 {
		start := time.Now()
		id, err := db.InsertJob(ctx, b.schema.Pool, db.NewJob{Title: "wake up", Company: "Acme"})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return b.rows(t)[id].Status == db.StatusInReview },
			30*time.Second, time.Millisecond)
		t.Logf("insert %d: committed to in_review after %v", i, time.Since(start))
	}
	require.Equal(t, 3, b.requireExactlyOnce(t))
}

func TestNotificationsDuringACycleCoalesce(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	r := b.newRelay(t, b.cfg)
	// Hold the first cycle that finds work until every insert is in.
	release := make(chan struct{})
	var held atomic.Bool
	r.hooks.afterPublish = func(context.Context, *pgx.Conn) {
		if held.CompareAndSwap(false, true) {
			<-release
		}
	}
	startRelay(t, r)
	require.Eventually(t, func() bool { return counterValue(t, r.m.Cycles.WithLabelValues("empty")) >= 1 },
		10*time.Second, time.Millisecond)
	before := cyclesRun(t, r)

	_, err := db.InsertJob(ctx, b.schema.Pool, db.NewJob{Title: "first"})
	require.NoError(t, err)
	require.Eventually(t, held.Load, 10*time.Second, time.Millisecond)
	for range 999 {
		_, err := db.InsertJob(ctx, b.schema.Pool, db.NewJob{Title: "single-row insert"})
		require.NoError(t, err)
	}
	close(release)
	require.Eventually(t, func() bool {
		backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
		require.NoError(t, err)
		return backlog.Pending == 0 && backlog.InReview == 1000
	}, 30*time.Second, 5*time.Millisecond)

	// 1,000 notifications: the held cycle, then one drain of ten batches of
	// 100 and the empty cycle that ends it; a notification still in flight
	// may add one more. Not 1,000.
	cycles := cyclesRun(t, r) - before
	t.Logf("1000 single-row inserts caused %v cycles", cycles)
	require.LessOrEqual(t, cycles, 14.0)
	require.Equal(t, 1000, b.requireExactlyOnce(t))
}

func TestShutdownMidDrain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(t, 30_000)
	r := b.newRelay(t, b.cfg)
	stop := startRelay(t, r)
	require.Eventually(t, func() bool { return counterValue(t, r.m.JobsRelayed) >= 2000 },
		30*time.Second, time.Millisecond)
	stop() // returns once the cycle in flight has committed or rolled back

	inReview := b.requireExactlyOnce(t)
	require.Positive(t, inReview)
	require.Less(t, inReview, 30_000, "the relay should have stopped mid-drain")
	require.EqualValues(t, inReview, counterValue(t, r.m.JobsRelayed))
	for _, w := range r.workers {
		require.Nil(t, w.conn, "cycle connection left open")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{BatchSize: -1}, "BatchSize"},
		{Config{BatchSize: BatchSizeMax + 1}, "BatchSize"},
		{Config{CycleTimeout: time.Millisecond}, "CycleTimeout"},
		{Config{CycleTimeout: time.Minute, DedupTTL: time.Second}, "DedupTTL"},
		{Config{MaxMemoryRatio: 1.5}, "MaxMemoryRatio"},
		{Config{MaxStreamLag: -2}, "MaxStreamLag"},
		{Config{ReenqueueAfter: -2}, "ReenqueueAfter"},
		{Config{MaxEntryBytes: 10}, "MaxEntryBytes"},
	} {
		err := tc.cfg.withDefaults().validate()
		require.ErrorContains(t, err, tc.want)
	}
	require.NoError(t, (&Config{}).withDefaults().validate())
}

func TestAnIdleRelaySendsNothing(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	opts := *b.rdb.Options()
	rdb := redis.NewClient(&opts)
	defer rdb.Close()
	commands := &commandCounter{}
	rdb.AddHook(commands)
	cfg := b.cfg
	cfg.PollInterval = time.Hour
	cfg.MaxStreamLag = 100 // backpressure checks on, too
	r, err := New(b.schema.Pool, rdb, cfg)
	require.NoError(t, err)
	startRelay(t, r)
	require.Eventually(t, func() bool { return cyclesRun(t, r) == 1 }, 10*time.Second, time.Millisecond)

	// When the listener's session last ran a statement.
	listenerActivity := func() time.Time {
		var at time.Time
		require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT query_start FROM pg_stat_activity WHERE pid = $1`,
			r.listenerPID.Load()).Scan(&at))
		return at
	}
	pgBefore, redisBefore := listenerActivity(), commands.n.Load()
	time.Sleep(2 * time.Second) // what is tested is that nothing happens meanwhile
	require.Equal(t, pgBefore, listenerActivity(), "an idle relay's listener ran a statement")
	require.Equal(t, redisBefore, commands.n.Load(), "an idle relay sent Redis commands")
	require.Equal(t, 1.0, cyclesRun(t, r), "no cycle (no statement on the cycle connection) without a notification or a poll tick")
}

// commandCounter is a go-redis hook that counts the commands a client sends,
// pipelined ones included. It counts exactly, where CLIENT LIST's idle
// time is in whole seconds.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestDedupRecordsGoOnceCommitted(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 250)
	n, err := b.newRelay(t, b.cfg).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 250, n)
	// Every batch committed: no record is left for DEDUP_TTL, only the
	// hash's marker.
	fields, err := b.rdb.HKeys(ctx, "{"+b.stream+"}:sent").Result()
	require.NoError(t, err)
	require.Equal(t, []string{"~"}, fields, "records left")
	require.Zero(t, b.rdb.ZCard(ctx, "{"+b.stream+"}:sent:exp").Val(), "expiries left")
}

// TestDedupRecordsGoWhenTheNextBatchPublishesNothing: a batch whose jobs
// are all too large for an entry publishes nothing, so it cannot delete
// the records of the batches committed before it: they are deleted later,
// not left for DEDUP_TTL.
func TestDedupRecordsGoWhenTheNextBatchPublishesNothing(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.sql(t, `INSERT INTO jobs (title, company, created_at)
SELECT 'Job ' || g, 'Good', now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 20) g;
INSERT INTO jobs (title, company, created_at)
SELECT repeat('T', 2097152), 'Oversized Inc', now() - interval '10 minutes' + g * interval '1 second' FROM generate_series(1, 10) g`)
	cfg := b.cfg
	cfg.BatchSize, cfg.Workers = 10, 1
	res, err := b.newRelay(t, cfg).DrainReport(ctx)
	require.NoError(t, err)
	require.Len(t, res.Failed, 10)
	fields, err := b.rdb.HKeys(ctx, "{"+b.stream+"}:sent").Result()
	require.NoError(t, err)
	require.Equal(t, []string{"~"}, fields, "records left")
	require.Zero(t, b.rdb.ZCard(ctx, "{"+b.stream+"}:sent:exp").Val(), "expiries left")
}
