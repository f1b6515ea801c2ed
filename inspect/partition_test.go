package inspect

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// TestPartitionsAreSummedAndShownEach: with partitions, the snapshot sums
// them up and lists each, and the gauges show each.
func TestPartitionsAreSummedAndShownEach(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	for i, n := range []int{1, 2, 3} {
		name := stream + ":" + string(rune('0'+i))
		for range n {
			require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: name, Values: []any{"job_id", "x"}}).Err())
		}
		require.NoError(t, rdb.XGroupCreate(ctx, name, "workers", "0").Err())
		require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w", Streams: []string{name, ">"}, Count: 1}).Err())
	}
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{" + stream + ":2}:dead", Values: []any{"job_id", "y"}}).Err())
	// A dead letter of the time before partitions counts too.
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{" + stream + "}:dead", Values: []any{"job_id", "z"}}).Err())

	snap, err := Take(ctx, schema.Pool, rdb, Options{Stream: stream, Partitions: 3})
	require.NoError(t, err)
	require.Equal(t, stream, snap.Stream.Name)
	require.EqualValues(t, 6, snap.Stream.Length)
	require.EqualValues(t, 2, snap.DeadLetters)
	require.Len(t, snap.Groups, 1)
	require.EqualValues(t, 3, snap.Groups[0].Pending)
	require.EqualValues(t, 3, snap.Groups[0].Lag) // 0 + 1 + 2 unread
	require.Len(t, snap.Groups[0].Consumers, 1)
	require.EqualValues(t, 3, snap.Groups[0].Consumers[0].Pending)
	require.Len(t, snap.Partitions, 3)
	require.EqualValues(t, 3, snap.Partitions[2].Stream.Length)

	c := NewCollector(nil, nil, CollectorConfig{})
	c.snap = snap
	g := gauges(t, c)
	require.Equal(t, 6.0, g["jobrelay_stream_length"])
	require.Equal(t, 2.0, g["jobrelay_partition_length{stream="+stream+":1}"])
	require.Equal(t, 2.0, g["jobrelay_partition_group_lag{group=workers}{stream="+stream+":2}"])
	require.Equal(t, 1.0, g["jobrelay_partition_dead_letter_length{stream="+stream+":2}"])
}
