package consumer

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// statusQueries counts the consumer's status checks (db.JobStatuses).
type statusQueries struct{ n atomic.Int64 }

func (q *statusQueries) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(data.SQL, "SELECT id::text, status, attempts FROM jobs") {
		q.n.Add(1)
	}
	return ctx
}

func (*statusQueries) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestLateGroupChecksEntriesInBatches: the entries a group created after
// them reads are checked against the table before their handlers run
// (their jobs may be reviewed already), one query per read, prefetched
// entries included. One query per prefetched entry made draining such a
// backlog several times slower.
func TestLateGroupChecksEntriesInBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const jobs = 400
	b.publish(t, jobs) // before any group exists

	var queries statusQueries
	pool := b.schema.TracedPool(t, &queries)

	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	cfg.ReclaimIdle = time.Minute
	c, err := New(pool, b.rdb, cfg)
	require.NoError(t, err)
	testenv.Start(t, c.Run)
	require.Eventually(t, func() bool { return b.count(t, db.StatusReviewed) == jobs }, time.Minute, 20*time.Millisecond)
	// Reads of Concurrency (4) entries until the handlers' speed is known,
	// then of up to 100 more: a few dozen queries, not one per entry.
	require.Less(t, queries.n.Load(), int64(jobs/8), "status queries for %d entries", jobs)
	t.Logf("%d status queries for %d entries", queries.n.Load(), jobs)
}
