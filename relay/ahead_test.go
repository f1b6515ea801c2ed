package relay

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// TestARowRefusedInEitherBatchOfATransactionIsIsolated: a transaction
// carries two batches while a backlog drains. A row that refuses in_review
// fails the first batch's UPDATE (sent while the second batch publishes)
// or the second's (sent with the COMMIT); either way one isolating cycle
// covers both batches, the row is marked failed, and every other job is
// relayed exactly once.
func TestARowRefusedInEitherBatchOfATransactionIsIsolated(t *testing.T) {
	t.Parallel()
	for _, pos := range []int{3, 13} {
		t.Run("job "+strconv.Itoa(pos), func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			b := setup(t)
			b.seed(t, 30)
			// Claim order is pickJob's: oldest first, one second apart.
			b.sql(t, `UPDATE jobs SET created_at = o.t FROM (
SELECT id, now() - interval '1 hour' + row_number() OVER (ORDER BY id) * interval '1 second' AS t FROM jobs) o
WHERE jobs.id = o.id`)
			bad := b.pickJob(t, pos)
			b.embargo(t, bad)
			cfg := b.cfg
			cfg.BatchSize, cfg.Workers, cfg.PriorityStrict = 10, 1, true
			r := b.newRelay(t, cfg)

			res, err := r.DrainReport(ctx)
			require.NoError(t, err)
			require.Equal(t, []string{bad}, res.Failed)
			require.Equal(t, db.StatusFailed, b.row(t, bad).Status)
			require.Equal(t, "relay: cannot mark job in_review: ERROR: job "+bad+" is under embargo (SQLSTATE P0001)", *b.row(t, bad).LastError)
			require.Equal(t, 29, b.requireExactlyOnce(t))
			require.Len(t, b.entries(t), 29, "the refused job's entry is deleted")
			require.EqualValues(t, 1, counterValue(t, r.m.Errors.WithLabelValues("commit")), "one failed transaction")
		})
	}
}

// TestAClaimAheadThatKeepsFailingLetsTheBatchBeforeItCommit: a claim
// ahead that fails for a reason other than a row's data (here its
// connection is killed each time) rolls back the batch in hand. The next
// cycle commits that batch without claiming ahead, so the relay moves on
// instead of failing the same batch for ever.
func TestAClaimAheadThatKeepsFailingLetsTheBatchBeforeItCommit(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 30)
	cfg := b.cfg
	cfg.BatchSize, cfg.Workers = 10, 1
	r := b.newRelay(t, cfg)
	kills := 0
	r.hooks.beforeClaimAhead = func(ctx context.Context, conn *pgx.Conn) { // on the relay's goroutine
		kills++
		if err := terminateBackend(ctx, b.schema.Pool, conn.PgConn().PID()); err != nil {
			t.Error(err)
		}
	}
	// Each drain stops at its first failed cycle; each but the first
	// commits a batch first.
	var drains int
	for drains = 1; drains <= 10; drains++ {
		if _, err := r.Drain(ctx); err == nil {
			break
		}
	}
	require.Equal(t, 4, drains, "drains until one succeeds")
	require.Equal(t, 3, kills)
	require.Equal(t, 30, b.requireExactlyOnce(t))
	require.Len(t, b.entries(t), 30)
}

// TestAFailedClaimAheadCommitsTheBatchBeforeIt: an unreadable row in the
// batch claimed ahead fails that claim and rolls back the batch before it,
// already published. The next cycle commits that batch alone, and only
// then isolates the row: the batch is not rolled back and published
// again, cycle after cycle, while isolating cycles (oldest first) drain
// older jobs before they reach the row (once its dedup records expired,
// that duplicated its entries).
func TestAFailedClaimAheadCommitsTheBatchBeforeIt(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := testenv.NewDatabase(t, "EUC_JP", "client_encoding=UTF8")
	_, err := pool.Exec(ctx, `INSERT INTO jobs (title, company, created_at)
SELECT 'Old ' || g, 'Old', now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 50) g;
INSERT INTO jobs (title, company, priority, created_at)
SELECT 'Hot ' || g, 'Hot', 5, now() - interval '10 minutes' + g * interval '1 second' FROM generate_series(1, 15) g`)
	require.NoError(t, err)
	bad := insertUnreadableJob(t, pool, 5, 10*time.Minute-12500*time.Millisecond)

	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	r, err := New(pool, rdb, Config{Stream: s, MaxStreamLag: -1, MaxMemoryRatio: -1, BatchSize: 10, Workers: 1, PriorityStrict: true})
	require.NoError(t, err)
	// What the first COMMIT of a cycle made in_review.
	var hot, old = -1, -1
	r.hooks.afterCommit = func() { // on the relay's goroutine: t.Error, not require
		r.hooks.afterCommit = nil
		err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE company = 'Hot'), count(*) FILTER (WHERE company = 'Old')
FROM jobs WHERE status = 'in_review'`).Scan(&hot, &old)
		if err != nil {
			t.Error(err)
		}
	}
	res, err := r.DrainReport(ctx)
	require.NoError(t, err)
	require.Equal(t, 10, hot, "the first batch commits in the cycle whose claim ahead failed")
	require.Zero(t, old)
	require.Equal(t, []string{bad}, res.Failed)
	require.Equal(t, 65, res.Jobs-len(res.Failed))
	msgs, err := rdb.XRange(ctx, s, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 65, "one entry per job")
}
