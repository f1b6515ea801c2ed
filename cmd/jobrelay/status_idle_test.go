package main

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Issue 14, item 4: status tells a stuck delivery by the time since the
// entry's last delivery, not since it was added: an old backlog delivered
// just now is healthy.
func TestStatusTellsAStuckDeliveryFromItsLastDelivery(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	ctx := ctxT(t)
	rdb := testenv.NewRedis(t)
	const group = "job_review_workers"

	// Two entries added two hours ago, delivered now.
	twoHoursAgo := time.Now().Add(-2 * time.Hour).UnixMilli()
	var ids []string
	for i := range 2 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: pl.stream, ID: strconv.FormatInt(twoHoursAgo, 10) + "-" + strconv.Itoa(i),
			Values: []any{"job_id", strconv.Itoa(i)}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, rdb.XGroupCreate(ctx, pl.stream, group, "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "worker-1", Streams: []string{pl.stream, ">"}}).Err())

	env := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	code, stdout, _ := runInProcess(t, env, "status", "--check")
	require.Zero(t, code, "an old backlog delivered just now is healthy:\n%s", stdout)
	require.Contains(t, stdout, "HEALTHY")
	require.Contains(t, stdout, ids[0]+" (2h0m ago)", "the oldest pending entry, by when it was added")

	// worker-2 took the second entry an hour ago and has not finished it.
	require.NoError(t, rdb.Do(ctx, "XCLAIM", pl.stream, group, "worker-2", 0, ids[1], "IDLE", time.Hour.Milliseconds(), "RETRYCOUNT", 2).Err())
	code, stdout, _ = runInProcess(t, env, "status", "--check")
	require.Equal(t, 1, code, stdout)
	require.Contains(t, stdout, ids[1]+" (delivered 1h0m ago)")
	require.Contains(t, stdout, "UNHEALTHY: group job_review_workers: entry "+ids[1]+", delivered to worker-2 1h0m")
	require.Contains(t, stdout, "(--max-delivery-idle 45m0s)")
	code, stdout, _ = runInProcess(t, env, "status", "--check", "--max-delivery-idle", "2h")
	require.Zero(t, code, stdout)

	code, stdout, _ = runInProcess(t, env, "status", "--json")
	require.Zero(t, code)
	var got inspect.Snapshot
	require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
	require.Len(t, got.Groups, 1)
	e := got.Groups[0].MostIdle
	require.NotNil(t, e)
	require.Equal(t, inspect.PendingEntry{ID: ids[1], Consumer: "worker-2", Deliveries: 2, DeliveredAt: e.DeliveredAt, IdleSecs: e.IdleSecs}, *e)
	require.InDelta(t, time.Hour.Seconds(), e.IdleSecs, 60)
	require.InDelta(t, (2 * time.Hour).Seconds(), got.Groups[0].OldestPendingAge, 60)
}
