package consumer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type testBundle struct {
	schema *testenv.Schema
	rdb    *redis.Client
	stream string
	logs   *testenv.Logs
	cfg    Config
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, testenv.NewRedis(t))
}

func setupWith(t *testing.T, rdb *redis.Client) *testBundle {
	t.Helper()
	logger, logs := testenv.NewLogs(t)
	stream := testenv.Stream(t, rdb)
	return &testBundle{
		schema: testenv.NewSchema(t),
		rdb:    rdb,
		stream: stream,
		logs:   logs,
		cfg: Config{
			Stream:      stream,
			Logger:      logger,
			Block:       100 * time.Millisecond,
			ReclaimIdle: 200 * time.Millisecond,
			Concurrency: 4,
		},
	}
}

// publish seeds n jobs and relays them to the stream; it returns their IDs.
func (b *testBundle) publish(t *testing.T, n int) []string {
	t.Helper()
	ctx := testenv.Context(t)
	testenv.Seed(t, b.schema.Pool, n)
	r, err := relay.New(b.schema.Pool, b.rdb, relay.Config{Stream: b.stream, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	_, err = r.Drain(ctx)
	require.NoError(t, err)
	return b.ids(t, db.StatusInReview)
}

func (b *testBundle) ids(t *testing.T, status string) []string {
	t.Helper()
	rows, err := b.schema.Pool.Query(testenv.Context(t), `SELECT id::text FROM jobs WHERE status = $1`, status)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

func (b *testBundle) count(t *testing.T, status string) int {
	t.Helper()
	counts, err := db.CountByStatus(testenv.Context(t), b.schema.Pool)
	require.NoError(t, err)
	return int(counts[status])
}

func (b *testBundle) pending(t *testing.T) int64 {
	t.Helper()
	p, err := b.rdb.XPending(testenv.Context(t), b.stream, GroupDefault).Result()
	require.NoError(t, err)
	return p.Count
}

// start runs a consumer until stop is called or the test ends.
func (b *testBundle) start(t *testing.T, cfg Config) (c *Consumer, stop func()) {
	t.Helper()
	c, err := New(b.schema.Pool, b.rdb, cfg)
	require.NoError(t, err)
	return c, testenv.Start(t, c.Run)
}

// calls counts handler calls per job.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[id]++
	return c.n[id]
}

func (c *calls) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

func (c *calls) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, n := range c.n {
		t += n
	}
	return t
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 60*time.Second, 5*time.Millisecond, msg)
}

func TestReviewsEveryJobOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 2000) // before any consumer exists: the group starts at 0
	var seen calls
	cfg := b.cfg
	// Each job is delivered once: on a loaded machine, the 200ms of the
	// other tests would let one consumer reclaim what the other has read
	// but not yet started.
	cfg.ReclaimIdle = 10 * time.Second
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error {
		require.NotEmpty(t, j.Title)
		require.Equal(t, 1, j.Attempt)
		require.EqualValues(t, 1, j.Delivery)
		require.NotEmpty(t, j.TaskID)
		require.False(t, j.EnqueuedAt.IsZero())
		seen.add(j.ID)
		return nil
	})
	c1, _ := b.start(t, cfg)
	c2, _ := b.start(t, cfg) // a second consumer of the same group: BUSYGROUP is fine
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 2000 }, "all reviewed")
	for _, id := range ids {
		require.Equal(t, 1, seen.get(id), "handler calls for %s", id)
	}
	eventually(t, func() bool { return b.pending(t) == 0 }, "all acknowledged")
	// The counters follow the acknowledgements.
	eventually(t, func() bool {
		return testutil.ToFloat64(c1.m.Jobs.WithLabelValues("reviewed"))+testutil.ToFloat64(c2.m.Jobs.WithLabelValues("reviewed")) == 2000
	}, "every review counted once")
}

func TestRecordsTheOutcomeOnlyAfterTheRelayCommits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	var handled atomic.Int32
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { handled.Add(1); return nil })
	b.start(t, cfg)

	// Play a relay that has published but not yet committed: the consumer
	// sees the entry first and finishes it at once.
	_, err := db.InsertJob(ctx, b.schema.Pool, db.NewJob{Title: "fast", Company: "Acme"})
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, b.schema.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	jobs, err := db.BeginClaim(ctx, conn, 10, nil)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	now := time.Now()
	pub, err := stream.Publish(ctx, b.rdb, &stream.PublishParams{Stream: b.stream, DedupTTL: time.Minute,
		EnqueuedAt: now.Format(time.RFC3339Nano), Jobs: jobs})
	require.NoError(t, err)

	eventually(t, func() bool { return handled.Load() == 1 }, "handler ran before the relay committed")
	require.NoError(t, db.CommitInReview(ctx, conn, &db.InReviewParams{
		IDs: []string{jobs[0].ID}, StreamIDs: pub.StreamIDs, EnqueuedAt: now}))
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 1 }, "reviewed after the relay's commit")
	eventually(t, func() bool { return b.pending(t) == 0 }, "acknowledged")
}

func TestDeadLettersAPoisonJobAfterMaxDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 20)
	poison := ids[7]
	var seen calls
	cfg := b.cfg
	cfg.MaxDeliveries = 3
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error {
		n := seen.add(j.ID)
		if j.ID == poison {
			require.EqualValues(t, n, j.Delivery)
			return errors.New("model refused: the description is not a job posting")
		}
		return nil
	})
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "poison job failed")
	require.Equal(t, 19, b.count(t, db.StatusReviewed))
	require.Equal(t, 3, seen.get(poison), "handler calls for the poison job")

	dead, err := b.rdb.XRange(ctx, "{"+b.stream+"}:dead", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, poison, dead[0].Values["job_id"])
	require.Equal(t, "3", dead[0].Values["deliveries"])
	require.Contains(t, dead[0].Values["error"], "model refused")
	require.NotEmpty(t, dead[0].Values["task_id"])
	require.NotEmpty(t, dead[0].Values["title"])

	var lastError string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT last_error FROM jobs WHERE id = $1`, poison).Scan(&lastError))
	require.Contains(t, lastError, "model refused")
	eventually(t, func() bool { return b.pending(t) == 0 }, "dead letter acknowledged")

	// retry --failed sends it back through the pipeline: attempts kept,
	// last_error cleared, published again as attempt 2.
	n, err := db.RetryFailed(ctx, b.schema.Pool, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	var status string
	var lastErr *string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT status, last_error FROM jobs WHERE id = $1`, poison).Scan(&status, &lastErr))
	require.Equal(t, db.StatusPendingReview, status)
	require.Nil(t, lastErr)
	_, err = db.RetryFailed(ctx, b.schema.Pool, poison)
	require.ErrorIs(t, err, db.ErrNotFound)
}

func TestReclaimsTheWorkOfADeadConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 50)
	// A consumer that read entries and died before finishing any.
	res, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: GroupDefault, Consumer: "dead-consumer",
		Streams: []string{b.stream, ">"}, Count: 30}).Result()
	if errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "NOGROUP") {
		require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
		res, err = b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: GroupDefault, Consumer: "dead-consumer",
			Streams: []string{b.stream, ">"}, Count: 30}).Result()
	}
	require.NoError(t, err)
	require.Len(t, res[0].Messages, 30)

	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	c, _ := b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 50 }, "all reviewed")
	for _, id := range ids {
		require.Equal(t, 1, seen.get(id))
	}
	require.EqualValues(t, 30, testutil.ToFloat64(c.m.Reclaimed))
}

func TestASlowJobIsNotStolen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 1)
	var seen calls
	cfg := b.cfg
	cfg.ReclaimIdle = 400 * time.Millisecond
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		seen.add(j.ID)
		select { // five times ReclaimIdle
		case <-time.After(2 * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	b.start(t, cfg)
	b.start(t, cfg) // an idle consumer that would love to reclaim it
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 1 }, "reviewed")
	require.Equal(t, 1, seen.get(ids[0]))
}

func TestSkipsARedeliveredJobAlreadyReviewed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 1)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	// A consumer marked it reviewed and crashed before its XACK.
	require.NoError(t, b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: GroupDefault, Consumer: "crashed",
		Streams: []string{b.stream, ">"}, Count: 10}).Err())
	_, err := b.schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'reviewed' WHERE id = $1`, ids[0])
	require.NoError(t, err)

	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	c, _ := b.start(t, cfg)
	eventually(t, func() bool { return testutil.ToFloat64(c.m.Jobs.WithLabelValues("skipped")) == 1 }, "skipped")
	require.Zero(t, b.pending(t), "acknowledged")
	require.Zero(t, seen.total())
}

func TestShutdownLetsHandlersFinish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, 4)
	started := make(chan struct{}, 4)
	cfg := b.cfg
	cfg.ReclaimIdle = time.Minute
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond) // work that ignores nothing but takes time
		return ctx.Err()
	})
	_, stop := b.start(t, cfg)
	for range 4 {
		<-started
	}
	stop() // returns after the four handlers finished and were recorded
	require.Equal(t, 4, b.count(t, db.StatusReviewed))
	require.Zero(t, b.pending(t))
}

func TestShutdownTimeoutLeavesJobsPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, 2)
	started := make(chan struct{}, 2)
	cfg := b.cfg
	cfg.ReclaimIdle = time.Minute
	cfg.ShutdownTimeout = 100 * time.Millisecond
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		started <- struct{}{}
		<-ctx.Done() // a review that takes longer than the shutdown allows
		return ctx.Err()
	})
	_, stop := b.start(t, cfg)
	<-started
	<-started
	stop()
	require.Equal(t, 2, b.count(t, db.StatusInReview), "not failed, not reviewed")
	require.EqualValues(t, 2, b.pending(t), "left pending for another consumer")
	var lastErr *string
	require.NoError(t, b.schema.Pool.QueryRow(testenv.Context(t), `SELECT max(last_error) FROM jobs`).Scan(&lastErr))
	require.Nil(t, lastErr, "a shutdown is not the job's failure")
}

func TestAbortStopsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, 1)
	started := make(chan struct{})
	cfg := b.cfg
	cfg.ShutdownTimeout = time.Hour
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	c, stop := b.start(t, cfg)
	<-started
	go func() {
		require.Eventually(t, func() bool { return len(b.logs.Matching("consumer: stopping")) > 0 }, 10*time.Second, time.Millisecond)
		c.Abort()
	}()
	stop()
	require.EqualValues(t, 1, b.pending(t))
}

func TestRecreatesALostGroup(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	b := setupWith(t, srv.Client())
	ctx := testenv.Context(t)
	b.publish(t, 10)
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 10 }, "first batch reviewed")

	require.NoError(t, b.rdb.FlushAll(ctx).Err()) // the stream and the group are gone
	b.publish(t, 10)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 20 }, "reviewed after FLUSHALL")
	require.NotEmpty(t, b.logs.Matching("consumer group missing"))
	require.Less(t, len(b.logs.Matching("consumer group missing")), 5, "recreating the group must not spin")
}

func TestRemovesIdleConsumersWithNothingPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	b.publish(t, 5)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	require.NoError(t, b.rdb.XGroupCreateConsumer(ctx, b.stream, GroupDefault, "gone-empty").Err())
	require.NoError(t, b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: GroupDefault, Consumer: "gone-busy",
		Streams: []string{b.stream, ">"}, Count: 5}).Err())

	cfg := b.cfg
	cfg.ReclaimIdle = 100 * time.Millisecond
	cfg.DeleteConsumersAfter = 300 * time.Millisecond
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	c, _ := b.start(t, cfg)
	// gone-busy keeps its entries until they are reclaimed; then it goes too.
	eventually(t, func() bool {
		consumers, err := b.rdb.XInfoConsumers(ctx, b.stream, GroupDefault).Result()
		require.NoError(t, err)
		return len(consumers) == 1 && consumers[0].Name == c.Name()
	}, "only the live consumer left")
	require.Equal(t, 5, b.count(t, db.StatusReviewed))
}

func TestTrimsWhatEveryGroupIsDoneWith(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	// More than one XTRIM MINID ~ removes (100 nodes of 100 entries; the
	// repeat has a test of its own in internal/stream). Not many more:
	// under -race on a loaded 2-core CI machine, 50k took over a minute.
	const jobs = 20_000
	b.publish(t, jobs)
	// A second group that read one entry and never acknowledged it.
	require.NoError(t, b.rdb.XGroupCreate(ctx, b.stream, "slow", "0").Err())
	held, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "s", Streams: []string{b.stream, ">"}, Count: 1}).Result()
	require.NoError(t, err)
	heldID := held[0].Messages[0].ID
	// ...and read everything else, acknowledging it.
	rest, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "s", Streams: []string{b.stream, ">"}, Count: jobs}).Result()
	require.NoError(t, err)
	ids := make([]string, len(rest[0].Messages))
	for i, m := range rest[0].Messages {
		ids[i] = m.ID
	}
	require.NoError(t, b.rdb.XAck(ctx, b.stream, "slow", ids...).Err())

	cfg := b.cfg
	cfg.TrimInterval = time.Millisecond
	cfg.Concurrency = 64
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	b.start(t, cfg)
	// Counting scans the table: not every 5 ms, or the counts are what
	// keeps PostgreSQL busy.
	require.Eventually(t, func() bool { return b.count(t, db.StatusReviewed) == jobs }, 2*time.Minute, 100*time.Millisecond, "all reviewed")
	// The held entry is the oldest: nothing may be trimmed.
	msgs, err := b.rdb.XRange(ctx, b.stream, heldID, heldID).Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1, "an entry pending in a group was trimmed")

	// Once the slow group acknowledges it, the stream shrinks.
	require.NoError(t, b.rdb.XAck(ctx, b.stream, "slow", heldID).Err())
	b.publish(t, 10) // some more work, so the consumer trims again
	eventually(t, func() bool {
		n, err := b.rdb.XLen(ctx, b.stream).Result()
		require.NoError(t, err)
		return n < 300
	}, "stream trimmed")
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	h := HandlerFunc(func(context.Context, Job) error { return nil })
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Handler"},
		{Config{Handler: h, Concurrency: -1}, "Concurrency"},
		{Config{Handler: h, MaxDeliveries: -1}, "MaxDeliveries"},
		{Config{Handler: h, ReclaimIdle: time.Millisecond}, "ReclaimIdle"},
		{Config{Handler: h, ReclaimIdle: time.Hour, DeleteConsumersAfter: time.Minute}, "DeleteConsumersAfter"},
	} {
		require.ErrorContains(t, tc.cfg.withDefaults().validate(), tc.want)
	}
	cfg := (&Config{Handler: h}).withDefaults()
	require.NoError(t, cfg.validate())
	require.Regexp(t, `^.+-\d+-[0-9a-f]{6}$`, cfg.Name)
	require.NotEqual(t, cfg.Name, (&Config{Handler: h}).withDefaults().Name)
}

func TestHandlerTimeoutsAndPanicsAreFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 2)
	cfg := b.cfg
	cfg.MaxDeliveries = 1
	cfg.HandlerTimeout = 50 * time.Millisecond
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		if j.ID == ids[0] {
			<-ctx.Done() // never answers in time
			return ctx.Err()
		}
		panic("nil map in the review model")
	})
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusFailed) == 2 }, "both failed")
	errs := map[string]string{}
	rows, err := b.schema.Pool.Query(ctx, `SELECT id::text, last_error FROM jobs`)
	require.NoError(t, err)
	for rows.Next() {
		var id, e string
		require.NoError(t, rows.Scan(&id, &e))
		errs[id] = e
	}
	require.NoError(t, rows.Err())
	require.Contains(t, errs[ids[0]], "timed out after 50ms")
	require.Contains(t, errs[ids[1]], "handler panicked: nil map in the review model")
}

func TestRecoversFromRedisAndPostgresOutages(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	b := setupWith(t, srv.Client())
	proxy := testenv.StartProxy(t, testenv.PostgresAddr(t))
	pool, err := db.Open(ctx, b.schema.ThroughProxy(t, proxy), 4)
	require.NoError(t, err)
	defer pool.Close()

	var handled atomic.Int32
	release := make(chan struct{})
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		if handled.Add(1) == 1 {
			<-release // finishes while PostgreSQL is unreachable
		}
		return nil
	})
	c, err := New(pool, b.rdb, cfg)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	b.publish(t, 1)
	eventually(t, func() bool { return handled.Load() == 1 }, "handler started")
	proxy.Down()
	close(release)
	eventually(t, func() bool { return testutil.ToFloat64(c.m.Errors.WithLabelValues("finish")) >= 2 }, "recording retried")
	proxy.Up()
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 1 }, "recorded once PostgreSQL is back")
	eventually(t, func() bool { return len(b.logs.Matching("consumer: recording results recovered")) == 1 }, "recovery logged")
	require.Len(t, b.logs.Matching("consumer: recording results failed; retrying"), 1, "one line per change, not per retry")

	// Redis restarts empty: the consumer reconnects, recreates its group
	// and reviews what the relay publishes next.
	srv.Restart()
	b.publish(t, 5)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 6 }, "reviewed after the Redis restart")
}

// TestSkipsANewEntryOfAJobReviewedMeanwhile: a job re-published as attempt
// 2 (the reaper, or retry --failed) whose attempt-1 handler then succeeded
// late is reviewed; the unread attempt-2 entry must not run the handler
// again.
func TestSkipsANewEntryOfAJobReviewedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 2)
	// The group reads only what comes next: the attempt-2 entries.
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "$").Err())
	_, err := b.schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'pending_review' WHERE status = 'in_review'`)
	require.NoError(t, err)
	require.Len(t, b.publish(t, 0), 2)
	// The late success of attempt 1 marks the first one reviewed.
	_, err = b.schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'reviewed' WHERE id = $1`, ids[0])
	require.NoError(t, err)

	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 2 && b.pending(t) == 0 }, "both reviewed")
	require.Zero(t, seen.get(ids[0]), "the handler ran for a job already reviewed")
	require.Equal(t, 1, seen.get(ids[1]))
}
