package relay

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// withOwnRedis points the bundle at a Redis server of the test's own.
func (b *testBundle) withOwnRedis(t *testing.T) *testenv.RedisServer {
	t.Helper()
	srv := testenv.StartRedisServer(t)
	b.rdb = srv.Client()
	return srv
}

func TestReaperReenqueuesLostEntriesOnly(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	srv := b.withOwnRedis(t)
	b.seed(t, 30)
	cfg := b.cfg
	cfg.ReenqueueAfter = time.Millisecond
	r := b.newRelay(t, cfg)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, n)

	// A group has 10 entries delivered; 5 of them acknowledged while their
	// jobs stayed in_review (their outcome was lost). 20 are unread.
	require.NoError(t, b.rdb.XGroupCreate(ctx, b.stream, GroupDefault, "0").Err())
	read, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: GroupDefault, Consumer: "c", Streams: []string{b.stream, ">"}, Count: 10}).Result()
	require.NoError(t, err)
	acked := map[string]bool{}
	for _, m := range read[0].Messages[:5] {
		require.NoError(t, b.rdb.XAck(ctx, b.stream, GroupDefault, m.ID).Err())
		acked[m.Values["job_id"].(string)] = true
	}
	time.Sleep(5 * time.Millisecond) // older than ReenqueueAfter
	require.NoError(t, r.reap(ctx))
	for id, row := range b.rows(t) {
		if acked[id] {
			require.Equal(t, db.StatusPendingReview, row.Status, "acknowledged entry, job still in_review: re-enqueued")
			require.Contains(t, *row.LastError, "was lost")
		} else {
			require.Equal(t, db.StatusInReview, row.Status, "pending or unread entries are left alone")
		}
	}

	// Redis restarts empty: every entry is gone.
	srv.Restart()
	require.NoError(t, r.reap(ctx))
	for _, row := range b.rows(t) {
		require.Equal(t, db.StatusPendingReview, row.Status)
		require.EqualValues(t, 1, row.Attempts, "the next claim counts the new attempt")
	}
	require.EqualValues(t, 30, counterValue(t, r.m.JobsReaped))

	// They flow again, as attempt 2, into the new stream.
	n, err = r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, n)
	entries := b.entries(t)
	require.Len(t, entries, 30)
	for _, e := range entries {
		require.Equal(t, "2", e.Values["attempt"])
	}
	for _, row := range b.rows(t) {
		require.Equal(t, db.StatusInReview, row.Status)
		require.EqualValues(t, 2, row.Attempts)
	}
}

func TestBackpressureOnGroupLag(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 300)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	cfg := b.cfg
	cfg.MaxStreamLag = 50
	cfg.pressureInterval = time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	published := func() int64 {
		n, err := b.rdb.XLen(ctx, b.stream).Result()
		require.NoError(t, err)
		return n
	}
	paused := func() bool { return counterValue(t, r.m.Paused) == 1 }
	require.Eventually(t, paused, 30*time.Second, time.Millisecond)
	require.EqualValues(t, 50, published(), "a claim takes only the room left under MAX_STREAM_LAG (50)")

	// Consumers catch up, batch by batch; the relay follows.
	for read := 0; read < 300; {
		res, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: GroupDefault, Consumer: "c",
			Streams: []string{b.stream, ">"}, Count: 100, Block: 30 * time.Second}).Result()
		require.NoError(t, err)
		read += len(res[0].Messages)
	}
	require.EqualValues(t, 300, published())
	require.Eventually(t, func() bool { // the last batch commits just after its XADD
		backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
		require.NoError(t, err)
		return backlog.Pending == 0
	}, 30*time.Second, time.Millisecond)

	// The relay may have paused once more after its last claim: it resumes
	// at its next check, now that the group has read everything. The gauge
	// goes to 0 just before the resume line is written: wait for both.
	resumed := func() int { return len(b.logger.Matching("consumers caught up; resuming")) }
	require.Eventually(t, func() bool {
		return !paused() && resumed() == int(counterValue(t, r.m.BackpressurePauses))
	}, 30*time.Second, time.Millisecond)
	pauses := counterValue(t, r.m.BackpressurePauses)
	require.GreaterOrEqual(t, pauses, 1.0)
	require.Len(t, b.logger.Matching("relay: pausing"), int(pauses), "one line per pause, not per check")
	require.Equal(t, int(pauses), resumed(), "one line per resume")
}

func TestBackpressureOnRedisMemory(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	srv := b.withOwnRedis(t)
	admin := srv.Client()
	b.seed(t, 10)

	info, err := admin.InfoMap(ctx, "memory").Result()
	require.NoError(t, err)
	used, err := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	require.NoError(t, err)
	// Redis is 95% full: over the 0.8 share.
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used*100/95, 10)).Err())

	cfg := b.cfg
	cfg.MaxMemoryRatio = 0.8
	cfg.pressureInterval = time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)
	require.Eventually(t, func() bool { return counterValue(t, r.m.Paused) == 1 }, 30*time.Second, time.Millisecond)
	backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 10, backlog.Pending, "the backlog waits in PostgreSQL")
	require.Contains(t, b.logger.Matching("relay: pausing")[0].Message, "of maxmemory")

	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", "1gb").Err())
	require.Eventually(t, func() bool {
		backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
		require.NoError(t, err)
		return backlog.InReview == 10
	}, 30*time.Second, time.Millisecond)
}

func TestRedisDownAtStartAndMidRun(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	srv := b.withOwnRedis(t)
	srv.Stop()
	b.seed(t, 50)
	cfg := b.cfg
	cfg.PollInterval = time.Hour
	cfg.CycleTimeout = time.Second
	cfg.DedupTTL = time.Minute
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	inReview := func() int64 {
		backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
		require.NoError(t, err)
		return backlog.InReview
	}
	// Down at start: the relay retries.
	require.Eventually(t, func() bool { return counterValue(t, r.m.Errors.WithLabelValues("publish")) >= 2 },
		30*time.Second, time.Millisecond)
	require.Zero(t, inReview())
	srv.Start()
	require.Eventually(t, func() bool { return inReview() == 50 }, 30*time.Second, 5*time.Millisecond, "recovered without a restart")

	// Down mid-run: new jobs wait, then flow.
	srv.Stop()
	b.seed(t, 20)
	require.Eventually(t, func() bool { return counterValue(t, r.m.Errors.WithLabelValues("publish")) >= 4 },
		30*time.Second, time.Millisecond)
	srv.Start()
	require.Eventually(t, func() bool { return inReview() == 70 }, 30*time.Second, 5*time.Millisecond)
	require.Len(t, b.entries(t), 20, "the restarted Redis is empty: the new stream holds the 20 new jobs")

	// One line when it fails, one when it recovers: not one per retry. The
	// line of the recovery follows the cycle's COMMIT: wait for it.
	require.Eventually(t, func() bool { return len(b.logger.Matching("relay: recovered")) >= 2 },
		10*time.Second, time.Millisecond)
	require.Len(t, b.logger.Matching("relay: cycle failed; retrying"), 2)
	require.Len(t, b.logger.Matching("relay: recovered"), 2)
}

func TestPostgresDownAtStartAndMidRun(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	proxy := testenv.StartProxy(t, testenv.PostgresAddr(t))
	proxy.Down()
	pool, err := db.Open(ctx, b.schema.ThroughProxy(t, proxy), 4)
	require.NoError(t, err)
	defer pool.Close()
	cfg := b.cfg
	cfg.PollInterval = 100 * time.Millisecond // catch-up also happens on the poll tick
	r, err := New(pool, b.rdb, cfg)
	require.NoError(t, err)
	startRelay := func() {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	startRelay()
	b.seed(t, 40)
	require.Eventually(t, func() bool { return counterValue(t, r.m.Errors.WithLabelValues("claim")) >= 3 },
		30*time.Second, time.Millisecond)
	require.Error(t, r.Ready(), "not ready without its LISTEN connection")

	proxy.Up()
	inReview := func() int64 {
		backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
		require.NoError(t, err)
		return backlog.InReview
	}
	require.Eventually(t, func() bool { return inReview() == 40 }, 30*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 30*time.Second, 5*time.Millisecond)

	proxy.Down()
	b.seed(t, 10)
	require.Eventually(t, func() bool { return r.Ready() != nil }, 30*time.Second, time.Millisecond)
	proxy.Up()
	require.Eventually(t, func() bool { return inReview() == 50 }, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, 50, b.requireExactlyOnce(t))
	require.Len(t, b.logger.Matching("relay: LISTEN connection lost"), 2)
}

func TestListenConnectionLossRunsACatchUpCycle(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.PollInterval = time.Hour // only LISTEN, or its catch-up, can wake it
	r := b.newRelay(t, cfg)
	var reconnects atomic.Int32
	gate := make(chan struct{})
	r.hooks.beforeListen = func() {
		if reconnects.Add(1) == 2 { // the first reconnection waits for the test
			<-gate
		}
	}
	startRelay(t, r)

	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	require.NoError(t, err)
	defer admin.Close(ctx)
	require.NoError(t, terminateBackend(ctx, admin, r.listenerPID.Load()))
	require.Eventually(t, func() bool { return reconnects.Load() == 2 }, 30*time.Second, time.Millisecond)

	// Inserted while nobody listens: its notification is lost.
	id, err := db.InsertJob(ctx, b.schema.Pool, db.NewJob{Title: "while away"})
	require.NoError(t, err)
	close(gate)
	require.Eventually(t, func() bool { return b.rows(t)[id].Status == db.StatusInReview }, 30*time.Second, time.Millisecond,
		"the catch-up cycle after re-listening relays it")
	require.Len(t, b.logger.Matching("relay: LISTEN connection lost"), 1)
	require.Len(t, b.logger.Matching("relay: LISTEN connection restored"), 1)
}

func TestBadRowsDoNotBlockGoodOnes(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	_, err := b.schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, company, site, job_url, description, created_at) VALUES
 (NULL, NULL, NULL, NULL, NULL, now() - interval '9 minutes'),
 ('', '', '', '', '', now() - interval '8 minutes'),
 ('Huge description', 'Acme', 'otta', 'u', repeat('x', 1048576), now() - interval '7 minutes'),
 (repeat('T', 2097152), 'Oversized Inc', 'otta', 'u', '', now() - interval '6 minutes'),
 ('Ünïcödé ✓ 日本語', 'Zürich AG', 'stepstone', 'https://example.com/ü', '', now() - interval '5 minutes'),
 ('Fine', 'Behind them', 'otta', 'u', '', now() - interval '4 minutes')`)
	require.NoError(t, err)
	n, err := b.newRelay(t, b.cfg).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, n)

	byTitle := map[string]map[string]any{}
	for _, e := range b.entries(t) {
		title, _ := e.Values["title"].(string)
		if _, ok := e.Values["title"]; !ok {
			title = "<null>"
		}
		byTitle[title] = e.Values
	}
	require.Len(t, byTitle, 5, "every row but the oversized one is in the stream")
	require.Equal(t, map[string]any{"job_id": byTitle["<null>"]["job_id"], "attempt": "1", "enqueued_at": byTitle["<null>"]["enqueued_at"]},
		byTitle["<null>"], "NULL columns are absent fields")
	require.Empty(t, byTitle[""]["company"], "empty strings stay empty strings")
	require.Equal(t, "Acme", byTitle["Huge description"]["company"])
	require.Equal(t, "Zürich AG", byTitle["Ünïcödé ✓ 日本語"]["company"])
	require.Contains(t, byTitle, "Fine")

	var status, lastError string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT status, last_error FROM jobs WHERE company = 'Oversized Inc'`).Scan(&status, &lastError))
	require.Equal(t, db.StatusFailed, status)
	require.Contains(t, lastError, "over the 1048576-byte limit")
	require.Len(t, b.logger.Matching("job cannot be published"), 1)
}

func TestInvalidUTF8IsRelayedIntact(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	// Only a SQL_ASCII database stores bytes that are not UTF-8; the
	// application's may be one.
	pool := testenv.NewDatabase(t, "SQL_ASCII", "")

	latin1 := "Caf\xe9 Entwickler (m/w/d) \xff"
	_, err := pool.Exec(ctx, `INSERT INTO jobs (title, company) VALUES ($1, 'Good'), ('After it', 'Good')`, latin1)
	require.NoError(t, err)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	r, err := New(pool, rdb, Config{Stream: stream, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	msgs, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	titles := map[string]bool{}
	for _, m := range msgs {
		titles[m.Values["title"].(string)] = true
	}
	require.True(t, titles[latin1], "the bytes arrive as they were stored")
	require.True(t, titles["After it"])
}
