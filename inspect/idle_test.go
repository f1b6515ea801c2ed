package inspect

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// testGroup is the consumer group of these tests.
const testGroup = "workers"

// setIdle makes consumer own the pending entry id of testGroup, last
// delivered idle ago (XCLAIM's IDLE option), with deliveries counted.
func setIdle(ctx context.Context, t *testing.T, rdb redis.UniversalClient, stream, consumer, id string, idle time.Duration, deliveries int) {
	t.Helper()
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, testGroup, consumer, 0, id,
		"IDLE", idle.Milliseconds(), "RETRYCOUNT", deliveries).Err())
}

// Issue 14, item 4: an old backlog delivered just now is not a stuck
// delivery. The oldest pending entry's age counts from when it was added;
// the most idle entry's from its last delivery.
func TestMostIdleCountsFromTheLastDelivery(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	const group = testGroup

	// Three entries added an hour ago, delivered now.
	hourAgo := time.Now().Add(-time.Hour).UnixMilli()
	var ids []string
	for i := range 3 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: strconv.FormatInt(hourAgo, 10) + "-" + strconv.Itoa(i),
			Values: []any{"job_id", strconv.Itoa(i)}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, rdb.XGroupCreate(ctx, stream, group, "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "a", Streams: []string{stream, ">"}}).Err())

	snap, err := Take(ctx, schema.Pool, rdb, Options{Stream: stream})
	require.NoError(t, err)
	require.Len(t, snap.Groups, 1)
	grp := snap.Groups[0]
	require.Equal(t, ids[0], grp.OldestPendingID)
	require.InDelta(t, time.Hour.Seconds(), grp.OldestPendingAge, 60, "added an hour ago")
	require.NotNil(t, grp.MostIdle)
	require.Less(t, grp.MostIdle.IdleSecs, 60.0, "delivered just now")
	require.Equal(t, "a", grp.MostIdle.Consumer)
	require.EqualValues(t, 1, grp.MostIdle.Deliveries)

	c := NewCollector(nil, nil, CollectorConfig{})
	c.snap = snap
	g := gauges(t, c)
	require.InDelta(t, time.Hour.Seconds(), g["jobrelay_stream_oldest_pending_entry_age_seconds{group=workers}"], 60)
	require.Less(t, g["jobrelay_stream_pending_entry_max_idle_seconds{group=workers}"], 60.0)

	// The middle entry's consumer has held it for 10 minutes without a
	// result; another for 5.
	setIdle(ctx, t, rdb, stream, "b", ids[1], 10*time.Minute, 3)
	setIdle(ctx, t, rdb, stream, "c", ids[2], 5*time.Minute, 1)
	snap, err = Take(ctx, schema.Pool, rdb, Options{Stream: stream})
	require.NoError(t, err)
	grp = snap.Groups[0]
	require.Equal(t, ids[0], grp.OldestPendingID, "the oldest entry is still the first")
	require.NotNil(t, grp.MostIdle)
	require.Equal(t, ids[1], grp.MostIdle.ID)
	require.Equal(t, "b", grp.MostIdle.Consumer)
	require.EqualValues(t, 3, grp.MostIdle.Deliveries)
	require.InDelta(t, (10 * time.Minute).Seconds(), grp.MostIdle.IdleSecs, 60)
	require.WithinDuration(t, snap.TakenAt.Add(-10*time.Minute), grp.MostIdle.DeliveredAt, time.Minute)
	c.snap = snap
	require.InDelta(t, (10 * time.Minute).Seconds(), gauges(t, c)["jobrelay_stream_pending_entry_max_idle_seconds{group=workers}"], 60)

	// Once everything is acknowledged, nothing is idle.
	require.NoError(t, rdb.XAck(ctx, stream, group, ids...).Err())
	snap, err = Take(ctx, schema.Pool, rdb, Options{Stream: stream})
	require.NoError(t, err)
	require.Nil(t, snap.Groups[0].MostIdle)
	c.snap = snap
	require.Zero(t, gauges(t, c)["jobrelay_stream_pending_entry_max_idle_seconds{group=workers}"])
}

// The most idle entry is found wherever it is in a pending list longer
// than one XPENDING page.
func TestMostIdleFindsTheEntryOnAnyPage(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	const group = testGroup
	const n = 2*mostIdlePage + 50

	require.NoError(t, rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err())
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"job_id", strconv.Itoa(i)}})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "a", Streams: []string{stream, ">"}, Count: n}).Result()
	require.NoError(t, err)
	entries := msgs[0].Messages
	require.Len(t, entries, n)

	for _, tc := range []struct {
		idx  int
		idle time.Duration
	}{{10, 5 * time.Minute}, {mostIdlePage + 20, 15 * time.Minute}, {2*mostIdlePage + 40, 20 * time.Minute}, {2*mostIdlePage + 45, 7 * time.Minute}} {
		setIdle(ctx, t, rdb, stream, "b", entries[tc.idx].ID, tc.idle, 2)
	}
	e, err := mostIdle(ctx, rdb, stream, group)
	require.NoError(t, err)
	require.NotNil(t, e)
	require.Equal(t, entries[2*mostIdlePage+40].ID, e.ID, "on the last page")
	require.InDelta(t, (20 * time.Minute).Seconds(), e.Idle.Seconds(), 60)

	// The most idle one on the first page, the others after it.
	setIdle(ctx, t, rdb, stream, "b", entries[3].ID, time.Hour, 2)
	e, err = mostIdle(ctx, rdb, stream, group)
	require.NoError(t, err)
	require.Equal(t, entries[3].ID, e.ID)
}

// BenchmarkMostIdle measures finding the most idle of 10,000 pending
// entries, delivered in ID order as consumers do (one round trip) and in
// the reverse order of idleness (the worst case: every page has a more
// idle entry).
func BenchmarkMostIdle(b *testing.B) {
	ctx := testenv.Context(b)
	rdb := testenv.NewRedis(b)
	stream := testenv.Stream(b, rdb)
	const n = 10_000
	require.NoError(b, rdb.XGroupCreateMkStream(ctx, stream, testGroup, "0").Err())
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"job_id", strconv.Itoa(i)}})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(b, err)
	msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: testGroup, Consumer: "a", Streams: []string{stream, ">"}, Count: n}).Result()
	require.NoError(b, err)
	entries := msgs[0].Messages

	b.Run("delivered_in_order", func(b *testing.B) {
		for b.Loop() {
			if _, err := mostIdle(ctx, rdb, stream, testGroup); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Later entries more idle: each page holds a new most idle one.
	pipe = rdb.Pipeline()
	for i, e := range entries {
		pipe.Do(ctx, "XCLAIM", stream, testGroup, "b", 0, e.ID, "IDLE", 1000+i*10)
	}
	_, err = pipe.Exec(ctx)
	require.NoError(b, err)
	b.Run("worst_order", func(b *testing.B) {
		for b.Loop() {
			if _, err := mostIdle(ctx, rdb, stream, testGroup); err != nil {
				b.Fatal(err)
			}
		}
	})
}
