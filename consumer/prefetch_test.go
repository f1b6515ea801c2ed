package consumer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// A consumer whose handlers were fast prefetches entries beyond its idle
// handlers; when its handlers then turn slow, it must not sit on them: the
// entries it cannot start soon are handed back, and another consumer
// reviews them, while the first holds only what its handlers run.
func TestPrefetchedEntriesGoToOthersWhenHandlersTurnSlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	const total = 300
	b.publish(t, total)

	var calls atomic.Int64
	var blocked atomic.Int64
	slowCfg := b.cfg
	slowCfg.Name = "slow"
	slowCfg.Concurrency = 2
	slowCfg.Handler = HandlerFunc(func(ctx context.Context, _ Job) error {
		if calls.Add(1) <= 20 {
			return nil // fast at first: the reader prefetches
		}
		blocked.Add(1)
		<-ctx.Done() // then as slow as can be
		return ctx.Err()
	})
	slow, _ := b.start(t, slowCfg)
	require.Eventually(t, func() bool { return blocked.Load() == 2 }, 30*time.Second, 5*time.Millisecond,
		"the slow consumer's handlers did not block")

	fastCfg := b.cfg
	fastCfg.Name = "fast"
	fastCfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	b.start(t, fastCfg)
	require.Eventually(t, func() bool { return b.count(t, db.StatusReviewed) == total-2 }, 60*time.Second, 10*time.Millisecond,
		"the other consumer did not review what the slow one could not start")

	// The slow consumer holds only the two entries its handlers run.
	held, err := b.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: b.stream, Group: GroupDefault,
		Start: "-", End: "+", Count: total, Consumer: slow.Name()}).Result()
	require.NoError(t, err)
	require.Len(t, held, 2)
	require.NotEmpty(t, b.logs.Matching("handing prefetched entries back"), "the slow consumer never prefetched")
}

// A consumer whose handlers are slow from the start fetches for its idle
// handlers only: the other consumer gets everything else at once.
func TestSlowHandlersPrefetchNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const total = 50
	b.publish(t, total)

	var blocked atomic.Int64
	slowCfg := b.cfg
	slowCfg.Name = "slow"
	slowCfg.Concurrency = 2
	slowCfg.ReclaimIdle = time.Minute // nothing is reclaimed during the test
	slowCfg.Handler = HandlerFunc(func(ctx context.Context, _ Job) error {
		blocked.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
			return nil
		}
	})
	b.start(t, slowCfg)
	require.Eventually(t, func() bool { return blocked.Load() >= 4 }, 30*time.Second, 5*time.Millisecond)

	fastCfg := b.cfg
	fastCfg.Name = "fast"
	fastCfg.ReclaimIdle = time.Minute
	fastCfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	b.start(t, fastCfg)
	// Without reclaims, the fast consumer reviews everything the slow one
	// did not fetch; the slow one fetched for its two handlers at a time.
	require.Eventually(t, func() bool { return b.count(t, db.StatusReviewed) == total }, 60*time.Second, 10*time.Millisecond)
	require.Empty(t, b.logs.Matching("handing prefetched entries back"))
}
