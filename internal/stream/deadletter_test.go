package stream

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestDeleteDeadLettersReadsEveryPage(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)
	const n = 2*deadLetterPage + 500
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(name), Values: []any{FieldJobID, "job-" + strconv.Itoa(i), FieldError, "boom"}})
	}
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(name), Values: []any{"title", "malformed: no job_id"}})
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(name), Values: []any{FieldJobID, "job-7", FieldError, "again"}})
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	// The first, one on a page boundary, one on the last page, one twice;
	// and a job without dead letters.
	removed, err := DeleteDeadLetters(ctx, rdb, name, []string{"job-0", "job-" + strconv.Itoa(deadLetterPage-1), "job-" + strconv.Itoa(n-1), "job-7", "job-none"})
	require.NoError(t, err)
	require.EqualValues(t, 5, removed)
	require.EqualValues(t, n+2-5, rdb.XLen(ctx, DeadLetterKey(name)).Val())

	removed, err = DeleteDeadLetters(ctx, rdb, "no-such-stream-"+name, []string{"job-1"})
	require.NoError(t, err)
	require.Zero(t, removed)
}
