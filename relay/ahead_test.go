package relay

import (
	"context"
	"strconv"
	"testing"

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
	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	require.NoError(t, err)
	defer admin.Close(ctx)
	cfg := b.cfg
	cfg.BatchSize, cfg.Workers = 10, 1
	r := b.newRelay(t, cfg)
	kills := 0
	r.hooks.beforeClaimAhead = func(ctx context.Context, conn *pgx.Conn) { // on the relay's goroutine
		kills++
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, conn.PgConn().PID()); err != nil {
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
