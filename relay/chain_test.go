package relay

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// roundTrips counts the batches (round trips) sent on the relay's own
// connections, and which of them claim jobs.
type roundTrips struct {
	mu      sync.Mutex
	batches int
	claims  int
	claim   bool // the batch in flight claims
}

func (*roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (*roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (rt *roundTrips) TraceBatchStart(ctx context.Context, conn *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if strings.HasSuffix(conn.Config().RuntimeParams["application_name"], "relay") {
		rt.mu.Lock()
		rt.batches++
		rt.claim = false
		rt.mu.Unlock()
	}
	return ctx
}

func (rt *roundTrips) TraceBatchQuery(_ context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if strings.HasSuffix(conn.Config().RuntimeParams["application_name"], "relay") && strings.Contains(data.SQL, "SKIP LOCKED") {
		rt.mu.Lock()
		if !rt.claim {
			rt.claims++
		}
		rt.claim = true
		rt.mu.Unlock()
	}
}

func (*roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (rt *roundTrips) counts() (batches, claims int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.batches, rt.claims
}

// TestBacklogTakesOneRoundTripPerBatch: draining a backlog, each COMMIT
// carries the next transaction's claim, and each transaction carries a
// second batch, claimed while the first is published and published while
// the first is marked in_review. Two batches cost PostgreSQL three round
// trips instead of four, two of them while Redis works.
func TestBacklogTakesOneRoundTripPerBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	b.seed(t, 100)
	var rt roundTrips
	pool := b.schema.TracedPool(t, &rt)

	cfg := b.cfg
	cfg.BatchSize, cfg.Workers = 10, 1
	r, err := New(pool, b.rdb, cfg)
	require.NoError(t, err)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 100, n)
	require.Equal(t, 100, b.requireExactlyOnce(t))

	// 10 batches in 5 transactions: the first claim, then for each
	// transaction the claim ahead, the first batch's UPDATE, and the
	// second's UPDATE and COMMIT with the next claim; the last finds
	// nothing.
	batches, claims := rt.counts()
	require.Equal(t, 1+5*3, batches, "round trips")
	require.Equal(t, 1+5*2, claims, "round trips that claim")
}

// TestStopWithAClaimInHandRollsItBack: a relay stopping between a COMMIT
// that claimed the next batch and that batch's publish rolls the claim
// back: its jobs stay pending, unpublished and unlocked.
func TestStopWithAClaimInHandRollsItBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	b.seed(t, 30)
	cfg := b.cfg
	cfg.BatchSize, cfg.Workers = 10, 1
	r := b.newRelay(t, cfg)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	held := make(chan struct{})
	r.hooks.afterCommit = func() {
		stop() // the relay stops while it holds the next claim
		close(held)
		r.hooks.afterCommit = nil
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no batch committed")
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not stop")
	}
	require.Equal(t, 20, b.requireExactlyOnce(t), "the first transaction's two batches only")
	require.Len(t, b.entries(t), 20)
	// Nothing stays locked: a claim that would wait for no lock gets the 10.
	conn, err := b.schema.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	jobs, _, err := db.BeginClaimWith(ctx, conn.Conn(), &db.ClaimParams{Limit: 100}, nil)
	require.NoError(t, err)
	require.Len(t, jobs, 10)
	require.NoError(t, db.Rollback(ctx, conn.Conn()))
	for _, w := range r.workers {
		require.Nil(t, w.next, "claim in hand after Run returned")
	}
}

// TestAClaimWhoseConnectionClosedIsNotPublished: the batch claimed with a
// COMMIT is locked by that connection's transaction. If the connection is
// gone before the batch is published, so are the locks, and another relay
// may hold the rows: the relay must not publish them from a new
// connection, but fail the cycle and claim afresh.
func TestAClaimWhoseConnectionClosedIsNotPublished(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	b.seed(t, 30)
	cfg := b.cfg
	cfg.BatchSize, cfg.Workers = 10, 1
	r := b.newRelay(t, cfg)

	other, err := b.schema.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer other.Release()
	var otherTx pgx.Tx
	r.hooks.afterCommit = func() { // on the relay's goroutine: t.Error, not require
		r.hooks.afterCommit = nil
		if err := r.workers[0].conn.Close(ctx); err != nil { // the claim of the next 10 goes with it
			t.Error(err)
		}
		// Another relay takes every pending row.
		tx, err := other.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, `SELECT id FROM jobs WHERE status = 'pending_review' FOR UPDATE`)
		}
		if err != nil {
			t.Error(err)
		}
		otherTx = tx
	}
	startRelay(t, r)
	claimErrors := func() float64 { return counterValue(t, r.m.Errors.WithLabelValues("claim")) }
	require.Eventually(t, func() bool { return claimErrors() >= 1 }, 30*time.Second, time.Millisecond)
	require.Len(t, b.entries(t), 20, "nothing published of the rows another transaction holds")

	require.NoError(t, otherTx.Rollback(ctx))
	require.Eventually(t, func() bool { return len(b.entries(t)) == 30 && b.backlog(t).InReview == 30 },
		30*time.Second, 5*time.Millisecond)
	require.Equal(t, 30, b.requireExactlyOnce(t))
}
