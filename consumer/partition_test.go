package consumer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// TestPartitionsAreReadAndRetiredOnesDrained: a consumer of 2 partitions
// reviews every job a relay of 3 published: the third partition, which
// in_review jobs still name, is read until drained.
func TestPartitionsAreReadAndRetiredOnesDrained(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	testenv.Seed(t, b.schema.Pool, 300)
	r, err := relay.New(b.schema.Pool, b.rdb, relay.Config{Stream: b.stream, Partitions: 3, MaxStreamLag: -1, MaxMemoryRatio: -1})
	require.NoError(t, err)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 300, n)

	var mu sync.Mutex
	calls := map[string]int{}
	cfg := b.cfg
	cfg.Partitions = 2
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error {
		mu.Lock()
		calls[j.ID]++
		mu.Unlock()
		return nil
	})
	_, stop := b.start(t, cfg)
	require.Eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 300 }, time.Minute, 10*time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	// Every job reached the handler (a slow machine's reclaim may hand one
	// to it twice: delivery is at least once).
	require.Len(t, calls, 300)
	for _, name := range stream.Partitions(b.stream, 3) {
		p, err := b.rdb.XPending(ctx, name, GroupDefault).Result()
		require.NoError(t, err)
		require.Zero(t, p.Count, "entries left pending in %s", name)
	}
	require.NotEmpty(t, b.logs.Matching("not a partition any more"), "the retired partition was found")
}

// TestConsumerMovesOldHelperKeys: a consumer's start moves the dead
// letters and retry records a deployment from before the hash tag left.
func TestConsumerMovesOldHelperKeys(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	t.Cleanup(func() { b.rdb.Del(ctx, b.stream+":dead", b.stream+":retry:"+GroupDefault) })
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream + ":dead", Values: []any{"job_id", "x", "error", "boom"}}).Err())
	require.NoError(t, b.rdb.HSet(ctx, b.stream+":retry:"+GroupDefault, "1-1", "0 1 0").Err())
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	_, stop := b.start(t, cfg)
	// The line follows every move: the dead letters move first, and
	// stopping between two moves would leave the retry records where they
	// were (seen on a loaded machine).
	require.Eventually(t, func() bool { return len(b.logs.Matching("moved the stream's helper keys")) > 0 }, time.Minute, 5*time.Millisecond)
	stop()
	require.Zero(t, b.rdb.Exists(ctx, b.stream+":dead", b.stream+":retry:"+GroupDefault).Val())
	require.EqualValues(t, 1, b.rdb.XLen(ctx, stream.DeadLetterKey(b.stream)).Val())
	require.Equal(t, "0 1 0", b.rdb.HGet(ctx, stream.RetryKey(b.stream, GroupDefault), "1-1").Val())
}
