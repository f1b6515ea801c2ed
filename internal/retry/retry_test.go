package retry

import (
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func failedJobs(t *testing.T, schema *testenv.Schema, rdb redis.Cmdable, streamName string, titles ...string) []string {
	t.Helper()
	ctx := testenv.Context(t)
	var ids []string
	for _, title := range titles {
		var id string
		require.NoError(t, schema.Pool.QueryRow(ctx, `INSERT INTO jobs (title, status, last_error) VALUES ($1, 'failed', 'boom') RETURNING id::text`, title).Scan(&id))
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(streamName), Values: []any{stream.FieldJobID, id, stream.FieldError, "boom"}}).Err())
		ids = append(ids, id)
	}
	return ids
}

func statusOf(t *testing.T, schema *testenv.Schema, id string) string {
	t.Helper()
	var status string
	require.NoError(t, schema.Pool.QueryRow(testenv.Context(t), `SELECT status FROM jobs WHERE id = $1`, id).Scan(&status))
	return status
}

func TestFailedSendsJobsBackWithTheirDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	ids := failedJobs(t, schema, rdb, name, "a", "b", "c")
	// A malformed dead letter, which names no job, stays.
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(name), Values: []any{"garbage", "x"}}).Err())

	res, err := Failed(ctx, schema.Pool, rdb, name, ids[0])
	require.NoError(t, err)
	require.Equal(t, []string{ids[0]}, res.JobIDs)
	require.EqualValues(t, 1, res.DeadLettersRemoved)
	require.Equal(t, name+":dead", res.DeadLetterStream)
	require.Equal(t, db.StatusPendingReview, statusOf(t, schema, ids[0]))
	require.Equal(t, db.StatusFailed, statusOf(t, schema, ids[1]))

	_, err = Failed(ctx, schema.Pool, rdb, name, ids[0])
	require.ErrorIs(t, err, db.ErrNotFound, "not failed any more")

	res, err = Failed(ctx, schema.Pool, rdb, name, "")
	require.NoError(t, err)
	require.ElementsMatch(t, ids[1:], res.JobIDs)
	require.EqualValues(t, 2, res.DeadLettersRemoved)
	require.EqualValues(t, 1, rdb.XLen(ctx, stream.DeadLetterKey(name)).Val(), "the malformed one stays")
}

func TestFailedChangesNothingWithoutRedis(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	ids := failedJobs(t, schema, rdb, name, "a")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer down.Close()

	_, err = Failed(ctx, schema.Pool, down, name, "")
	require.ErrorContains(t, err, "Redis, which holds the dead letters, is unreachable; nothing changed")
	require.Equal(t, db.StatusFailed, statusOf(t, schema, ids[0]))
}
