package stream

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestPartitionNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"job_review"}, Partitions("job_review", 1))
	require.Equal(t, []string{"job_review"}, Partitions("job_review", 0))
	require.Equal(t, []string{"job_review:0", "job_review:1", "job_review:2"}, Partitions("job_review", 3))
	require.True(t, IsPartition("job_review", "job_review"))
	require.True(t, IsPartition("job_review", "job_review:12"))
	require.False(t, IsPartition("job_review", "{job_review}:dead"))
	require.False(t, IsPartition("job_review", "job_review:"))
	require.False(t, IsPartition("job_review", "job_reviews:1"))
	require.Equal(t, "{job_review:3}:dead", DeadLetterKey("job_review:3"))
	require.Error(t, CheckName("a{b}"))
	require.NoError(t, CheckName("job_review"))

	// The hash is part of the layout: it must not change between versions.
	require.Equal(t, 0, PartitionOf("anything", 1))
	counts := make([]int, 6)
	for i := range 6000 {
		k := PartitionOf("00000000-0000-0000-0000-"+strconv.Itoa(100000000000+i), 6)
		counts[k]++
	}
	for _, c := range counts {
		require.InDelta(t, 1000, c, 150, "partitions get about as many jobs each: %v", counts)
	}
	require.Equal(t, 5, PartitionOf("4b0e2a4c-5b71-4cf6-9a41-4c1f0f6f6a10", 6))
}

func TestPublishSpreadsOverPartitionsIdempotently(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	var jobs []db.Job
	for i := range 40 {
		jobs = append(jobs, job("job-"+strconv.Itoa(i), 0))
	}
	params := &PublishParams{Stream: s, Partitions: 4, DedupTTL: time.Minute, EnqueuedAt: "t", Jobs: jobs}
	first, err := Publish(ctx, rdb, params)
	require.NoError(t, err)
	again, err := Publish(ctx, rdb, params)
	require.NoError(t, err)
	require.Equal(t, first.StreamIDs, again.StreamIDs, "a batch published twice gets its first entries back")
	require.Equal(t, first.Streams, again.Streams)
	require.Equal(t, first.Records.Fields[:40], again.Records.Fields, "and adds no record")
	require.Len(t, first.Records.Fields, 44, "one batch record per partition")
	var total int64
	for k, name := range Partitions(s, 4) {
		n := rdb.XLen(ctx, name).Val()
		require.Positive(t, n, "partition %d got no job", k)
		total += n
	}
	require.EqualValues(t, 40, total)
	for i := range jobs {
		require.Equal(t, Partitions(s, 4)[PartitionOf(jobs[i].ID, 4)], first.Streams[i])
		msgs, err := rdb.XRange(ctx, first.Streams[i], first.StreamIDs[i], first.StreamIDs[i]).Result()
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, jobs[i].ID, msgs[0].Values[FieldJobID])
	}
	// Forgetting routes each record to its partition.
	_, err = Publish(ctx, rdb, &PublishParams{Stream: s, Partitions: 4, DedupTTL: time.Minute, Forget: first.Records})
	require.NoError(t, err)
	for _, name := range Partitions(s, 4) {
		require.Zero(t, rdb.ZCard(ctx, "{"+name+"}:sent:exp").Val())
		require.Equal(t, []string{"~"}, rdb.HKeys(ctx, "{"+name+"}:sent").Val())
	}
}

// TestUpgradeKeysMovesOldHelperKeys: a deployment from before the hash tag
// keeps its dead letters, dedup records and retry records.
func TestUpgradeKeysMovesOldHelperKeys(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	t.Cleanup(func() { rdb.Del(ctx, s+":dead", s+":sent", s+":sent:1", s+":retry:g", s+":health") })
	for i := range 3 {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: s + ":dead", Values: []any{FieldJobID, "old-" + strconv.Itoa(i)}}).Err())
	}
	// A dead letter written under the new name already (a new consumer ran
	// before the upgrade did): both are kept.
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(s), Values: []any{FieldJobID, "new"}}).Err())
	expireAt := time.Now().Add(5 * time.Minute).UnixMilli()
	require.NoError(t, rdb.HSet(ctx, s+":sent:1", "~", "padding", "job-a:1", "1-1", "job-b:2", "2-1").Err())
	require.NoError(t, rdb.ZAdd(ctx, s+":sent", redis.Z{Score: float64(expireAt), Member: s + ":sent:1"}).Err())
	require.NoError(t, rdb.HSet(ctx, s+":retry:g", "5-1", "1 1 0").Err())

	u, err := UpgradeKeys(ctx, rdb, s, "g")
	require.NoError(t, err)
	require.Equal(t, Upgraded{DeadLetters: 3, DedupRecords: 2, RetryRecords: 1}, u)
	require.Zero(t, rdb.Exists(ctx, s+":dead", s+":sent", s+":sent:1", s+":retry:g").Val())
	dead, err := rdb.XRange(ctx, DeadLetterKey(s), "-", "+").Result()
	require.NoError(t, err)
	var ids []any
	for _, m := range dead {
		ids = append(ids, m.Values[FieldJobID])
	}
	require.ElementsMatch(t, []any{"new", "old-0", "old-1", "old-2"}, ids)
	require.Equal(t, "1 1 0", rdb.HGet(ctx, RetryKey(s, "g"), "5-1").Val())

	// The moved dedup record still answers a publish of the same attempt.
	res, err := Publish(ctx, rdb, &PublishParams{Stream: s, DedupTTL: time.Minute, EnqueuedAt: "t",
		Jobs: []db.Job{job("job-a", 0), job("job-b", 0)}})
	require.NoError(t, err)
	require.Equal(t, "1-1", res.StreamIDs[0])
	require.NotEqual(t, "2-1", res.StreamIDs[1], "job-b's record was for attempt 2")
	score, err := rdb.ZScore(ctx, "{"+s+"}:sent:exp", "job-a:1").Result()
	require.NoError(t, err)
	require.InDelta(t, float64(expireAt), score, 1)

	// Nothing left to move: a second run (another process) changes nothing.
	u, err = UpgradeKeys(ctx, rdb, s, "g")
	require.NoError(t, err)
	require.False(t, u.Any())
	require.EqualValues(t, 4, rdb.XLen(ctx, DeadLetterKey(s)).Val())
}
