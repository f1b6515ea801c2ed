package relay

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Issue 11, item 4: the cycle's timeouts are the transaction's own (SET
// LOCAL), not the session's, so that they hold behind PgBouncer in
// transaction mode, which refuses them in the startup packet and would
// hand a session setting to whichever client runs next on the server
// connection. A relay that hangs between publish and commit still loses its
// row locks after CycleTimeout.
//
// With batch 2 the hung publish is the second one, of the batch claimed
// ahead in the first batch's transaction: the locks of both batches are
// bounded alike. The last publish checked is of a batch claimed with a
// COMMIT: that claim's transaction has its timeouts too.
func TestCycleTimeoutsAreTransactionLocal(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 2} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			t.Parallel()
			testCycleTimeouts(t, batch)
		})
	}
}

func testCycleTimeouts(t *testing.T, batch int) {
	t.Helper()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 5)
	cfg := b.cfg
	cfg.CycleTimeout = 300 * time.Millisecond
	cfg.DedupTTL = time.Minute
	hangAt := int32(1)
	if batch > 0 {
		cfg.BatchSize, cfg.Workers = batch, 1
		hangAt = 2 // the batch claimed ahead
	}
	r := b.newRelay(t, cfg)
	require.Empty(t, r.connCfg.RuntimeParams["statement_timeout"], "no session setting: a pooler refuses it")
	require.Empty(t, r.connCfg.RuntimeParams["idle_in_transaction_session_timeout"])

	hung, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var settings [2]string
	r.hooks.afterPublish = func(ctx context.Context, conn *pgx.Conn) {
		if n := calls.Add(1); n == hangAt {
			close(hung)
			<-release // hung, ignoring its deadline: only PostgreSQL can end it
			return
		} else if n < hangAt {
			return
		}
		require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')`).
			Scan(&settings[0], &settings[1]))
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Drain(ctx)
		done <- err
	}()
	<-hung
	// PostgreSQL ends the idle transaction: its row locks go while the
	// relay still hangs.
	require.Eventually(t, func() bool {
		tx, err := b.schema.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		rows, err := tx.Query(ctx, `SELECT id FROM jobs FOR UPDATE NOWAIT`)
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			n++
		}
		return rows.Err() == nil && n == 5
	}, 30*time.Second, 10*time.Millisecond, "the hung cycle's locks are released after CycleTimeout")
	close(release)
	require.Error(t, <-done, "the hung cycle's transaction was ended by the server")

	_, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, [2]string{"300ms", "300ms"}, settings, "the next cycle's transaction has its timeouts")
	backlog, err := db.ReadBacklog(ctx, b.schema.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 5, backlog.InReview)
	require.Len(t, b.entries(t), 5, "the hung cycle's entries were published once")
}
