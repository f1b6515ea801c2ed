package stream

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// pendingEntries adds n entries to a new stream and has consumer "a" of
// group "g" read them; it returns their IDs.
func pendingEntries(ctx context.Context, t *testing.T, rdb *redis.Client, s string, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{"k", "v"}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, rdb.XGroupCreate(ctx, s, "g", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "a", Streams: []string{s, ">"}, Count: int64(n)}).Err())
	return ids
}

func deliveries(ctx context.Context, t *testing.T, rdb *redis.Client, s, id string) (owner string, count int64) {
	t.Helper()
	p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: "g", Start: id, End: id, Count: 1}).Result()
	require.NoError(t, err)
	require.Len(t, p, 1)
	return p[0].Consumer, p[0].RetryCount
}

func claimedIDs(res ReclaimResult) []string {
	var ids []string
	for _, c := range res.Claimed {
		ids = append(ids, c.Message.ID)
	}
	return ids
}

func TestReclaimWaitsForTheRetryDueTime(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	read := time.Now()
	ids := pendingEntries(ctx, t, rdb, s, 4)
	failed := func(consumer, id string, delay time.Duration, rec RetryRecord, retryCount int64) bool {
		ok, err := RecordFailure(ctx, rdb, &FailureParams{Stream: s, Group: "g", Consumer: consumer, ID: id,
			Delay: delay, Record: rec, RetryCount: retryCount, TTL: time.Hour})
		require.NoError(t, err)
		return ok
	}
	// ids[0] failed and backs off for an hour; ids[1] failed, due at
	// once, and the failure is taken back (its counter set to 0); ids[2]
	// was abandoned (no record); ids[3] is deleted from the stream.
	require.True(t, failed("a", ids[0], time.Hour, RetryRecord{Failures: 1}, -1))
	require.True(t, failed("a", ids[1], 0, RetryRecord{Failures: 3, Transient: 2}, 0))
	require.False(t, failed("b", ids[2], 0, RetryRecord{Failures: 1}, 0), "only the owner notes a failure")
	_, n := deliveries(ctx, t, rdb, s, ids[1])
	require.Zero(t, n, "RETRYCOUNT applied")
	_, n = deliveries(ctx, t, rdb, s, ids[2])
	require.EqualValues(t, 1, n, "left alone")
	require.NoError(t, rdb.XDel(ctx, s, ids[3]).Err())

	reclaim := func(count int, cursor string) ReclaimResult {
		res, err := Reclaim(ctx, rdb, &ReclaimParams{Stream: s, Group: "g", Consumer: "b",
			MinIdle: 300 * time.Millisecond, Cursor: cursor, Count: count})
		require.NoError(t, err)
		return res
	}
	all := reclaim(10, "0-0")
	if time.Since(read) < 300*time.Millisecond {
		require.Empty(t, all.Claimed, "nothing is idle for min-idle yet")
		require.Empty(t, all.Deleted)
	}
	require.Eventually(t, func() bool {
		res := reclaim(10, "0-0")
		all.Claimed = append(all.Claimed, res.Claimed...)
		all.Deleted = append(all.Deleted, res.Deleted...)
		return len(all.Claimed) >= 2 && len(all.Deleted) >= 1
	}, 10*time.Second, 10*time.Millisecond)
	// The two may become idle in separate calls, in either order: the
	// recorded failure restarted ids[1]'s idle time.
	slices.SortFunc(all.Claimed, func(a, b Claimed) int {
		return slices.Index(ids, a.Message.ID) - slices.Index(ids, b.Message.ID)
	})
	require.Equal(t, []string{ids[1], ids[2]}, claimedIDs(all))
	require.Equal(t, []string{ids[3]}, all.Deleted)
	require.EqualValues(t, 1, all.Claimed[0].Deliveries, "counted from the reset counter")
	require.Equal(t, RetryRecord{Failures: 3, Transient: 2}, all.Claimed[0].Retry)
	require.EqualValues(t, 2, all.Claimed[1].Deliveries)
	require.Equal(t, RetryRecord{}, all.Claimed[1].Retry)
	require.Equal(t, "v", all.Claimed[1].Message.Values["k"])

	owner, _ := deliveries(ctx, t, rdb, s, ids[0])
	require.Equal(t, "a", owner, "an entry backing off is not taken")
	left, err := rdb.HKeys(ctx, RetryKey(s, "g")).Result()
	require.NoError(t, err)
	require.Equal(t, []string{ids[0]}, left, "records of reclaimed entries are removed")
	ttl, err := rdb.PTTL(ctx, RetryKey(s, "g")).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 59*time.Minute, "the hash expires if no one writes it")
	pending, err := rdb.XPending(ctx, s, "g").Result()
	require.NoError(t, err)
	require.EqualValues(t, 3, pending.Count, "the deleted entry left the PEL")
}

func TestReclaimIsBoundedAndResumes(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	ids := pendingEntries(ctx, t, rdb, s, 7)
	// ids[1] and ids[4] back off.
	for _, id := range []string{ids[1], ids[4]} {
		ok, err := RecordFailure(ctx, rdb, &FailureParams{Stream: s, Group: "g", Consumer: "a", ID: id,
			Delay: time.Hour, RetryCount: -1, TTL: time.Hour})
		require.NoError(t, err)
		require.True(t, ok)
	}
	var got []string
	cursor := "0-0"
	pages := 0
	for {
		res, err := Reclaim(ctx, rdb, &ReclaimParams{Stream: s, Group: "g", Consumer: "b",
			MinIdle: 0, Cursor: cursor, Count: 2, Scan: 3})
		require.NoError(t, err)
		require.LessOrEqual(t, len(res.Claimed), 2, "at most Count per call")
		got = append(got, claimedIDs(res)...)
		pages++
		if cursor = res.Next; cursor == "0-0" {
			break
		}
		require.Less(t, pages, 10)
	}
	require.Equal(t, []string{ids[0], ids[2], ids[3], ids[5], ids[6]}, got)
}
