package relay

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// TestPartitionsPublishAndReapAfterAChangeOfN: a relay of 3 partitions
// spreads jobs by their id and records each row's stream; when the
// deployment goes to 2 partitions and the third's entries are lost, the
// new relays still reap that retired partition's jobs.
func TestPartitionsPublishAndReapAfterAChangeOfN(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.Partitions = 3
	b.seed(t, 300)
	n, err := b.newRelay(t, cfg).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 300, n)

	names := stream.Partitions(b.stream, 3)
	rows, err := b.schema.Pool.Query(ctx, `SELECT id::text, stream, stream_id FROM jobs`)
	require.NoError(t, err)
	byStream := map[string]int{}
	for rows.Next() {
		var id, s, entry string
		require.NoError(t, rows.Scan(&id, &s, &entry))
		require.Equal(t, names[stream.PartitionOf(id, 3)], s, "job %s recorded in its partition", id)
		msgs, err := b.rdb.XRange(ctx, s, entry, entry).Result()
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, id, msgs[0].Values[stream.FieldJobID])
		byStream[s]++
	}
	require.NoError(t, rows.Err())
	require.Len(t, byStream, 3)
	require.Zero(t, b.rdb.Exists(ctx, b.stream).Val(), "no entry in the base stream")

	// STREAM_PARTITIONS goes to 2; the third partition's entries are lost.
	require.NoError(t, b.rdb.Del(ctx, names[2]).Err())
	cfg.Partitions = 2
	cfg.ReenqueueAfter = time.Millisecond
	r := b.newRelay(t, cfg)
	require.NoError(t, r.reap(ctx))
	require.Equal(t, byStream[names[2]], b.countWhere(t, `status = 'pending_review'`),
		"the retired partition's lost jobs are re-enqueued, the others left alone")
	// Re-published, they go to the 2 partitions of today.
	n, err = r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, byStream[names[2]], n)
	require.Zero(t, b.countWhere(t, `status = 'in_review' AND stream = '`+names[2]+`'`))
}

// TestRelayMovesOldHelperKeys: the reaper's first run moves the keys a
// deployment from before the hash tag left, so its dead letters stay.
func TestRelayMovesOldHelperKeys(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	t.Cleanup(func() { b.rdb.Del(ctx, b.stream+":dead") })
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream + ":dead", Values: []any{"job_id", "x", "error", "boom"}}).Err())
	r := b.newRelay(t, b.cfg)
	require.NoError(t, r.reap(ctx))
	require.Zero(t, b.rdb.Exists(ctx, b.stream+":dead").Val())
	require.EqualValues(t, 1, b.rdb.XLen(ctx, stream.DeadLetterKey(b.stream)).Val())
}
