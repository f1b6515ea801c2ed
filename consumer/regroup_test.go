package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// TestARecreatedGroupDoesNotReviewReviewedJobsAgain: when the group is lost
// while the stream survives (an operator's XGROUP DESTROY), the recreated
// group reads the stream from 0, and every attempt-1 entry still in it is
// new to it. The handler must not run again for jobs already reviewed.
func TestARecreatedGroupDoesNotReviewReviewedJobsAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 10)
	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	cfg.ReclaimIdle = time.Minute // no reclaim: a stalled machine must not run a handler twice here
	_, stop := b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 10 && b.pending(t) == 0 }, "all reviewed")
	stop()
	require.Equal(t, 10, seen.total())

	require.NoError(t, b.rdb.XGroupDestroy(ctx, b.stream, GroupDefault).Err())
	c, _ := b.start(t, cfg)
	eventually(t, func() bool {
		return testutil.ToFloat64(c.m.Jobs.WithLabelValues("skipped")) == 10 && b.pending(t) == 0
	}, "every entry read again and acknowledged without the handler")
	for _, id := range ids {
		require.Equal(t, 1, seen.get(id), "the handler ran again for job %s, already reviewed", id)
	}
}
