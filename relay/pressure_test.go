package relay

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func (b *testBundle) xlen(t *testing.T) int64 {
	t.Helper()
	n, err := b.rdb.XLen(testenv.Context(t), b.stream).Result()
	require.NoError(t, err)
	return n
}

// sql runs SQL of the test's (the application's) in the test's schema.
func (b *testBundle) sql(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.schema.Pool.Exec(testenv.Context(t), sql, args...)
	require.NoError(t, err)
}

// requirePausedAt waits until the relay has paused with exactly bound
// jobs relayed and in the stream.
func (b *testBundle) requirePausedAt(t *testing.T, r *Relay, bound int) {
	t.Helper()
	require.Eventually(t, func() bool { return counterValue(t, r.m.Paused) == 1 }, 30*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return b.backlog(t).InReview == int64(bound) }, 30*time.Second, time.Millisecond)
	require.EqualValues(t, bound, b.xlen(t))
}

func (b *testBundle) backlog(t *testing.T) db.Backlog {
	t.Helper()
	backlog, err := db.ReadBacklog(testenv.Context(t), b.schema.Pool)
	require.NoError(t, err)
	return backlog
}

// consumeAndAck reads the group's new entries and acknowledges them at
// once, as quick consumers would, without ever trimming the stream, until
// the test ends.
func consumeAndAck(t *testing.T, rdb *redis.Client, stream, group string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(testenv.Context(t)))
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "quick",
				Streams: []string{stream, ">"}, Count: 50, Block: 50 * time.Millisecond}).Result()
			if err != nil || len(res) == 0 {
				continue
			}
			ids := make([]string, len(res[0].Messages))
			for i, m := range res[0].Messages {
				ids[i] = m.ID
			}
			_ = rdb.XAck(ctx, stream, group, ids...).Err()
		}
	}()
}

// usedMemory is what INFO memory says Redis uses.
func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.InfoMap(testenv.Context(t), "memory").Result()
	require.NoError(t, err)
	used, err := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	require.NoError(t, err)
	return used
}

func TestBackpressureBoundIsExact(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(t, 1000)
	cfg := b.cfg
	cfg.MaxStreamLag = 250
	cfg.BatchSize = 100
	cfg.Workers = 2
	cfg.pressureInterval = time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	// No consumer group: nothing is ever read, the lag is the stream's
	// length. Two workers claim side by side, yet the stream stops at the
	// bound, not a batch or two past it.
	b.requirePausedAt(t, r, 250)
	backlog := b.backlog(t)
	require.EqualValues(t, 750, backlog.Pending, "the rest waits in PostgreSQL")
	require.Equal(t, 250, b.requireExactlyOnce(t))
	// Later readings do not let another batch through.
	since := time.Now()
	require.Eventually(t, func() bool {
		r.pressure.Lock()
		defer r.pressure.Unlock()
		return r.pressure.readAt.Sub(since) > 50*time.Millisecond
	}, 30*time.Second, time.Millisecond)
	require.EqualValues(t, 250, b.xlen(t))
	require.GreaterOrEqual(t, counterValue(t, r.m.BackpressurePauses), 1.0)
}

func TestBackpressureCountsEveryGroup(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 600)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	// A second group reads the same stream and has stalled.
	require.NoError(t, b.rdb.XGroupCreate(ctx, b.stream, "analytics", "0").Err())
	consumeAndAck(t, b.rdb, b.stream, GroupDefault)
	cfg := b.cfg
	cfg.MaxStreamLag = 150
	cfg.pressureInterval = time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	b.requirePausedAt(t, r, 150) // the stalled group bounds the stream, though jobrelay's own group keeps up
	require.EqualValues(t, 450, b.backlog(t).Pending)
	pausing := b.logger.Matching("relay: pausing")
	require.Len(t, pausing, 1)
	require.Contains(t, pausing[0].Message, "group analytics is")
	require.Equal(t, "analytics", pausing[0].Attrs["group"])

	// The second group catches up: the relay goes on.
	consumeAndAck(t, b.rdb, b.stream, "analytics")
	require.Eventually(t, func() bool { return b.backlog(t).InReview == 600 }, 30*time.Second, time.Millisecond)
}

func TestBackpressureTrimsAConsumedBurst(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	srv := b.withOwnRedis(t)
	admin := srv.Client()
	// Jobs of 4 KiB entries: 4 MiB in all, far more than Redis's own
	// variations (its Lua heap, client buffers).
	const jobs = 1000
	b.sql(t, `INSERT INTO jobs (title, company, site, job_url)
SELECT repeat('x', 4000), 'Acme', 'otta', 'https://example.com/' || g FROM generate_series(1, $1::int) g`, jobs)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	// Consumers that keep up within moments and never trim: once they are
	// done, no result arrives that would make them trim.
	consumeAndAck(t, b.rdb, b.stream, GroupDefault)
	// Room for about a quarter of the burst under the 0.8 share.
	limit := usedMemory(t, admin) + 1<<20
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(limit*10/8, 10)).Err())

	cfg := b.cfg
	cfg.MaxMemoryRatio = 0.8
	cfg.pressureInterval = time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)
	require.Eventually(t, func() bool { return b.backlog(t).InReview == jobs }, 20*time.Second, 5*time.Millisecond,
		"the relay trims what the consumers are done with, and resumes")
	require.Less(t, b.xlen(t), int64(jobs), "trimmed")
	require.Positive(t, counterValue(t, r.m.Trimmed))
	require.Zero(t, counterValue(t, r.m.Errors.WithLabelValues("publish")), "never over maxmemory (OOM)")
	require.Equal(t, jobs, b.requireExactlyOnceOrTrimmed(t))
}

// requireExactlyOnceOrTrimmed is requireExactlyOnce for a trimmed stream:
// every entry left belongs to its in_review job.
func (b *testBundle) requireExactlyOnceOrTrimmed(t *testing.T) int {
	t.Helper()
	rows := b.rows(t)
	seen := map[string]bool{}
	for _, m := range b.entries(t) {
		id, _ := m.Values["job_id"].(string)
		require.False(t, seen[id], "job %s has two entries", id)
		seen[id] = true
		r := rows[id]
		require.Equal(t, db.StatusInReview, r.Status)
		require.Equal(t, m.ID, *r.StreamID)
	}
	inReview := 0
	for _, r := range rows {
		if r.Status == db.StatusInReview {
			inReview++
			require.EqualValues(t, 1, r.Attempts)
		}
	}
	return inReview
}

func TestRefusedTrimIsAnError(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	srv := b.withOwnRedis(t)
	admin := srv.Client()
	// The relay's user may do anything but XTRIM, also from scripts.
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "relay", "on", ">secret", "~*", "&*", "+@all", "-xtrim").Err())
	b.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "relay", Password: "secret", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = b.rdb.Close() })

	// Consumers have read and acknowledged 2000 entries: trimmable, and
	// what fills Redis. They are big enough (2 MB) that trimming them
	// frees far more than Redis's own memory moves by (the relay's
	// connections added ~0.2 MB after maxmemory was set): with 200-byte
	// entries, what was left after the trim could still be above the limit.
	require.NoError(t, admin.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	pipe := admin.Pipeline()
	for i := range 2000 {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: []string{"job_id", strconv.Itoa(i), "title", strings.Repeat("x", 1000)}})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	consumeAndAck(t, admin, b.stream, GroupDefault)
	require.Eventually(t, func() bool {
		gs, err := admin.XInfoGroups(ctx, b.stream).Result()
		require.NoError(t, err)
		return gs[0].Lag == 0 && gs[0].Pending == 0
	}, 10*time.Second, time.Millisecond)
	used := usedMemory(t, admin)
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used*100/95, 10)).Err())

	b.seed(t, 20)
	cfg := b.cfg
	cfg.MaxMemoryRatio = 0.8
	cfg.pressureInterval = time.Millisecond
	cfg.stalledAfter = 100 * time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	trimErrors := func() float64 { return counterValue(t, r.m.Errors.WithLabelValues("trim")) }
	require.Eventually(t, func() bool { return trimErrors() >= 3 }, 30*time.Second, time.Millisecond)
	refused := b.logger.Matching("relay: trimming the stream failed")
	require.Len(t, refused, 1, "one line when trimming starts failing, not one per attempt")
	require.Equal(t, "ERROR", refused[0].Level.String())
	require.Regexp(t, `NOPERM|can't run this command`, refused[0].Attrs["err"], "the server's refusal")

	// Paused with nothing it can do: not ready.
	require.Eventually(t, func() bool { return r.Ready() != nil }, 30*time.Second, time.Millisecond)
	require.ErrorContains(t, r.Ready(), "paused")
	require.ErrorContains(t, r.Ready(), "of maxmemory")
	require.EqualValues(t, 20, b.backlog(t).Pending)

	// Allowed again: the relay trims, resumes and is ready.
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "relay", "+xtrim").Err())
	require.Eventually(t, func() bool { return b.backlog(t).InReview == 20 }, 30*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 30*time.Second, time.Millisecond)
	require.Len(t, b.logger.Matching("relay: trimming the stream works again"), 1)
	require.Len(t, b.logger.Matching("relay: trimming the stream failed"), 1)
}

func TestPausedRelayThatCannotResumeIsNotReady(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	srv := b.withOwnRedis(t)
	admin := srv.Client()
	// Something else fills Redis; the stream is empty and no consumer is
	// behind: nothing the relay or the consumers do frees memory.
	// (Many small values: one big one would leave a big query buffer,
	// which Redis frees a moment later.)
	for i := range 64 {
		require.NoError(t, admin.Set(ctx, "ballast:"+strconv.Itoa(i), strings.Repeat("b", 32<<10), 0).Err())
	}
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(usedMemory(t, admin)*100/95, 10)).Err())
	b.seed(t, 10)
	cfg := b.cfg
	cfg.MaxMemoryRatio = 0.8
	cfg.pressureInterval = time.Millisecond
	cfg.stalledAfter = 100 * time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	require.Eventually(t, func() bool { return counterValue(t, r.m.Paused) == 1 }, 30*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return r.Ready() != nil }, 30*time.Second, time.Millisecond)
	err := r.Ready()
	require.ErrorContains(t, err, "relay: paused for")
	require.ErrorContains(t, err, "without progress")
	// The gauge says so; a Redis at maxmemory would refuse a health
	// report, so none is written (status --check reads Redis memory).
	require.Eventually(t, func() bool { return counterValue(t, r.m.Stalled) == 1 }, 30*time.Second, 5*time.Millisecond)

	for i := range 64 {
		require.NoError(t, admin.Del(ctx, "ballast:"+strconv.Itoa(i)).Err())
	}
	require.Eventually(t, func() bool { return b.backlog(t).InReview == 10 }, 30*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 30*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return counterValue(t, r.m.Stalled) == 0 }, 30*time.Second, 5*time.Millisecond)
}

// TestAStalledRelayReportsItToOtherProcesses: a relay held back for good
// by a group that reads nothing says so where status --check, in another
// process, reads it, and clears it once it progresses.
func TestAStalledRelayReportsItToOtherProcesses(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 100)
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, "stalled", "0").Err())
	cfg := b.cfg
	cfg.MaxStreamLag = 50
	cfg.pressureInterval = time.Millisecond
	cfg.stalledAfter = 100 * time.Millisecond
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	reports := func() []stream.HealthReport {
		got, err := stream.Problems(ctx, b.rdb, b.stream, time.Now(), stream.HealthStaleAfter)
		require.NoError(t, err)
		return got
	}
	require.Eventually(t, func() bool {
		got := reports()
		return len(got) == 1 && strings.HasPrefix(got[0].Component, "relay ") &&
			strings.Contains(got[0].Problem, "group stalled is 50 entries behind") &&
			counterValue(t, r.m.Stalled) == 1
	}, 30*time.Second, 5*time.Millisecond)

	// The group reads: the relay resumes and the report goes.
	require.Eventually(t, func() bool {
		require.NoError(t, b.rdb.XGroupSetID(ctx, b.stream, "stalled", "$").Err()) // read all so far
		return len(reports()) == 0 && counterValue(t, r.m.Stalled) == 0 && b.backlog(t).Pending == 0
	}, 30*time.Second, 5*time.Millisecond)
}

// TestTheNextClaimWaitsForNoReading: the claim a COMMIT carries reserves
// its room on the last reading alone, inside the transaction: never when
// a reading is due, near a limit, or while another worker holds the state.
func TestTheNextClaimWaitsForNoReading(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.MaxStreamLag, cfg.BatchSize, cfg.pressureInterval = 1000, 100, time.Hour
	r := b.newRelay(t, cfg)
	require.Nil(t, r.reserveOnReading(), "no reading yet")
	first, err := r.reserve(ctx)
	require.NoError(t, err)
	require.Equal(t, 100, first.held)
	readAt := r.pressure.readAt

	var held []*reservation
	for {
		room := r.reserveOnReading()
		if room == nil {
			break
		}
		require.Equal(t, 100, room.held)
		held = append(held, room)
	}
	// A reading is due once what is reserved reaches half the bound.
	require.Len(t, held, 4, "100 reserved by reserve, then 4 batches: 500 of 1000")
	require.Equal(t, readAt, r.pressure.readAt, "no reading taken")
	for _, room := range held {
		room.release()
	}
	r.pressure.Lock()
	require.Nil(t, r.reserveOnReading(), "another worker holds the state")
	r.pressure.Unlock()
	require.NotNil(t, r.reserveOnReading())
}
