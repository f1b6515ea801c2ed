package inspect

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestReadJobShowsItsWholeLife(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)

	var id string
	require.NoError(t, schema.Pool.QueryRow(ctx, `INSERT INTO jobs (title, company) VALUES ('Go engineer', 'Acme') RETURNING id::text`).Scan(&id))
	entry, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: name, Values: []any{
		stream.FieldJobID, id, stream.FieldTitle, "Go engineer", stream.FieldCompany, "Acme", stream.FieldAttempt, "2", "extra", "x",
	}}).Result()
	require.NoError(t, err)
	_, err = schema.Pool.Exec(ctx, `UPDATE jobs SET status = 'in_review', stream_id = $2, stream = $3, enqueued_at = now(), attempts = 2 WHERE id = $1`,
		id, entry, name)
	require.NoError(t, err)
	require.NoError(t, rdb.XGroupCreate(ctx, name, "workers", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "c1", Streams: []string{name, ">"}, Count: 1}).Err())
	for i, errText := range []string{"first attempt: 422", "another job"} {
		job := id
		if i == 1 {
			job = "6f4ad772-733c-4929-bf9d-fdb047034582"
		}
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(name), Values: []any{
			stream.FieldJobID, job, stream.FieldError, errText, stream.FieldDeliveries, "5", stream.FieldAttempt, "1",
			stream.FieldDeadAt, "2026-01-02T03:04:05Z", stream.FieldTaskID, "1-0",
		}}).Err())
	}

	life, err := ReadJob(ctx, schema.Pool, rdb, "other-stream", id)
	require.NoError(t, err)
	require.Equal(t, db.StatusInReview, life.Row.Status)
	require.Equal(t, "Go engineer", life.Row.Title.String)
	require.False(t, life.Row.Location.Valid)
	require.Equal(t, name, life.Stream, "the stream the job was published to")
	require.NotNil(t, life.Entry)
	require.Equal(t, entry, life.Entry.ID)
	require.Equal(t, []Field{{"job_id", id}, {"title", "Go engineer"}, {"company", "Acme"}, {"attempt", "2"}, {"extra", "x"}}, life.Entry.Fields)
	require.Len(t, life.Deliveries, 1)
	require.Equal(t, "workers", life.Deliveries[0].Group)
	require.Equal(t, "c1", life.Deliveries[0].Consumer)
	require.EqualValues(t, 1, life.Deliveries[0].Count)
	require.Len(t, life.DeadLetters, 1, "dead letters are looked up in the stream the job was published to (its partition)")

	life, err = ReadJob(ctx, schema.Pool, rdb, name, id)
	require.NoError(t, err)
	require.Len(t, life.DeadLetters, 1)
	dl := life.DeadLetters[0]
	require.Equal(t, id, dl.JobID)
	require.Equal(t, "first attempt: 422", dl.Error)
	require.EqualValues(t, 5, dl.Deliveries)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), dl.DeadAt.UTC())

	list, err := ReadDeadLetters(ctx, rdb, name, 10)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "another job", list[0].Error, "newest first")

	_, err = ReadJob(ctx, schema.Pool, rdb, name, "6f4ad772-733c-4929-bf9d-fdb047034582")
	require.ErrorIs(t, err, db.ErrNotFound)
	_, err = ReadJob(ctx, schema.Pool, rdb, name, "not a job")
	require.ErrorIs(t, err, db.ErrNotFound)
}

func TestCollectorHandsOnItsSnapshots(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, name, "workers", "0").Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: name, Values: []any{"job_id", "x"}}).Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "c1", Streams: []string{name, ">"}, Count: 1}).Err())

	got := make(chan *Snapshot, 100)
	c := NewCollector(schema.Pool, rdb, CollectorConfig{Stream: name, Interval: 10 * time.Millisecond,
		ObserveFunc: func(s *Snapshot) {
			select {
			case got <- s:
			default: // it must not block
			}
		}})
	runCollector(ctx, t, c)
	var s *Snapshot
	select {
	case s = <-got:
	case <-ctx.Done():
		t.Fatal("no snapshot before the test's deadline")
	}
	require.Len(t, s.Groups, 1)
	require.EqualValues(t, 1, s.Groups[0].EntriesRead)
	require.EqualValues(t, 1, s.Groups[0].Pending)
	require.Nil(t, s.Jobs, "the collector does not count the whole table")
}

// A reading slower than the Interval still completes: each gets at least
// readTimeoutMin, not the Interval, or a short Interval on a slow network
// (or a loaded machine, where a new connection takes a while) would never
// yield a snapshot.
func TestCollectorReadsSlowerThanItsInterval(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	proxy := testenv.StartProxy(t, testenv.PostgresAddr(t))
	proxy.SetLatency(10 * time.Millisecond) // each round trip takes 20 ms more
	pool, err := db.Open(ctx, schema.ThroughProxy(t, proxy), 2)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	got := make(chan *Snapshot, 1)
	c := NewCollector(pool, rdb, CollectorConfig{Stream: name, Interval: 10 * time.Millisecond,
		ObserveFunc: func(s *Snapshot) {
			select {
			case got <- s:
			default:
			}
		}})
	runCollector(ctx, t, c)
	select {
	case s := <-got:
		require.Equal(t, name, s.Stream.Name)
	case <-time.After(time.Minute):
		t.Fatal("no snapshot: every reading was cut off at the Interval")
	}
}

// The counts by status and the backlog of one snapshot are of one moment,
// however fast jobs move.
func TestSnapshotIsOneMomentOfTheTable(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	testenv.Seed(t, schema.Pool, 2000)

	moverCtx, stop := context.WithCancel(ctx)
	moved := make(chan error, 1)
	go func() {
		for moverCtx.Err() == nil {
			_, err := schema.Pool.Exec(moverCtx, `UPDATE jobs SET status = 'in_review' WHERE id IN (SELECT id FROM jobs WHERE status = 'pending_review' LIMIT 5)`)
			if err != nil && moverCtx.Err() == nil {
				moved <- err
				return
			}
		}
		moved <- nil
	}()
	for range 100 {
		s, err := Take(ctx, schema.Pool, rdb, Options{Stream: name, Counts: true})
		require.NoError(t, err)
		require.Equal(t, s.Jobs[db.StatusPendingReview], s.Backlog.Pending)
		require.Equal(t, s.Jobs[db.StatusInReview], s.Backlog.InReview)
	}
	stop()
	require.NoError(t, <-moved)
}

// A partitioned pipeline's dead letters are in each partition's
// dead-letter stream, and in the pipeline stream's from before partitions.
func TestReadPartitionDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	for i, s := range []string{name + ":2", name, name + ":0", name + ":2", name + ":5"} {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(s), ID: strconv.Itoa(i+1) + "-0",
			Values: []any{stream.FieldJobID, "job " + strconv.Itoa(i+1), stream.FieldError, "in " + s}}).Err())
	}

	list, err := ReadPartitionDeadLetters(ctx, rdb, name, 3, 3)
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.Equal(t, []string{"job 4", "job 3", "job 2"}, []string{list[0].JobID, list[1].JobID, list[2].JobID},
		"the newest of every partition's and of the pipeline stream's, newest first; not of a partition beyond the count")
	require.Equal(t, "in "+name+":0", list[1].Error)

	list, err = ReadPartitionDeadLetters(ctx, rdb, name, 3, 10)
	require.NoError(t, err)
	require.Len(t, list, 4)
	list, err = ReadPartitionDeadLetters(ctx, rdb, name, 1, 10)
	require.NoError(t, err)
	require.Len(t, list, 1, "without partitions, the one stream's")
	require.Equal(t, "job 2", list[0].JobID)
}
