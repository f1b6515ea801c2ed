package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Found by the breaker: when the group is lost while the stream survives
// (an operator's XGROUP DESTROY, or a Redis restored from a snapshot older
// than the group's last read), the recreated group reads the stream from 0,
// and every attempt-1 entry still in it is "new": the handler runs again
// for jobs that are long reviewed (readLoop skips the status check for
// attempt 1). The contract: never call the handler for a job already
// reviewed.
func TestBreakerARecreatedGroupDoesNotReviewReviewedJobsAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 10)
	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	_, stop := b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 10 && b.pending(t, GroupDefault) == 0 }, "all reviewed")
	stop()
	require.Equal(t, 10, seen.total())

	require.NoError(t, b.rdb.XGroupDestroy(ctx, b.stream, GroupDefault).Err())
	b.start(t, cfg)
	time.Sleep(2 * time.Second)
	for _, id := range ids {
		require.Equal(t, 1, seen.get(id), "the handler ran again for job %s, already reviewed", id)
	}
}
