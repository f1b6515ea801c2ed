package db_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// inReview is the InReviewParams of claimed jobs, with stand-in entry IDs.
func inReview(jobs []db.Job) *db.InReviewParams {
	p := &db.InReviewParams{EnqueuedAt: time.Now()}
	for i := range jobs {
		p.IDs = append(p.IDs, jobs[i].ID)
		p.StreamIDs = append(p.StreamIDs, "1-"+string(rune('0'+i)))
	}
	return p
}

func countStatus(ctx context.Context, t *testing.T, pool *pgxpool.Pool, status string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = $1`, status).Scan(&n))
	return n
}

// TestCommitInReviewAndClaim: the COMMIT and the next claim share a round
// trip; the caller learns which of them failed.
func TestCommitInReviewAndClaim(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)

	t.Run("both", func(t *testing.T) {
		t.Parallel()
		s := testenv.NewSchema(t)
		_, err := db.InsertJobs(ctx, s.Pool, []db.NewJob{{Title: "a"}, {Title: "b"}, {Title: "c"}})
		require.NoError(t, err)
		conn, err := pgx.Connect(ctx, s.URL)
		require.NoError(t, err)
		defer conn.Close(context.WithoutCancel(ctx))
		jobs, err := db.BeginClaim(ctx, conn, 2, nil)
		require.NoError(t, err)
		next, c, committed, err := db.CommitInReviewAndClaim(ctx, conn, inReview(jobs), &db.ClaimParams{Limit: 2}, nil)
		require.NoError(t, err)
		require.True(t, committed)
		require.Len(t, next, 1)
		require.False(t, c.More)
		require.Equal(t, 2, countStatus(ctx, t, s.Pool, db.StatusInReview), "committed")
		// The third job is locked by the open transaction.
		other, err := db.BeginClaim(ctx, mustConnect(ctx, t, s.URL), 10, nil)
		require.NoError(t, err)
		require.Empty(t, other, "the claimed job is locked")
		require.NoError(t, db.CommitInReview(ctx, conn, inReview(next)))
		require.Equal(t, 3, countStatus(ctx, t, s.Pool, db.StatusInReview))
	})

	t.Run("the update fails", func(t *testing.T) {
		t.Parallel()
		s := testenv.NewSchema(t)
		_, err := db.InsertJobs(ctx, s.Pool, []db.NewJob{{Title: "a"}, {Title: "refused"}, {Title: "c"}})
		require.NoError(t, err)
		_, err = s.Pool.Exec(ctx, `ALTER TABLE jobs ADD CONSTRAINT refused CHECK (status <> 'in_review' OR title <> 'refused')`)
		require.NoError(t, err)
		conn := mustConnect(ctx, t, s.URL)
		jobs, _, err := db.BeginClaimWith(ctx, conn, &db.ClaimParams{Limit: 3, Oldest: true}, nil)
		require.NoError(t, err)
		next, _, committed, err := db.CommitInReviewAndClaim(ctx, conn, inReview(jobs), &db.ClaimParams{Limit: 2}, nil)
		require.True(t, db.IsRowError(err), "%v", err)
		require.False(t, committed)
		require.Nil(t, next)
		require.NoError(t, db.Rollback(ctx, conn))
		require.Equal(t, 3, countStatus(ctx, t, s.Pool, db.StatusPendingReview), "nothing committed")
	})

	t.Run("the claim fails", func(t *testing.T) {
		t.Parallel()
		// A database in EUC-JP can hold a title that a client asking for
		// UTF-8 cannot read: the claim that reaches it fails.
		pool := testenv.NewDatabase(t, "EUC_JP", "client_encoding=UTF8")
		_, err := pool.Exec(ctx, `INSERT INTO jobs (title, created_at) VALUES
('a', now() - interval '2 minutes'),
(convert_from('\xf5a1'::bytea, 'EUC_JP'), now() - interval '1 minute')`)
		require.NoError(t, err)
		conn := mustConnect(ctx, t, pool.Config().ConnString())
		jobs, _, err := db.BeginClaimWith(ctx, conn, &db.ClaimParams{Limit: 1, Oldest: true}, nil)
		require.NoError(t, err)
		require.Len(t, jobs, 1)
		next, _, committed, err := db.CommitInReviewAndClaim(ctx, conn, inReview(jobs), &db.ClaimParams{Limit: 1}, nil)
		require.True(t, db.IsRowError(err), "%v", err)
		require.True(t, committed, "the COMMIT went through")
		require.Nil(t, next)
		require.NoError(t, db.Rollback(ctx, conn))
		require.Equal(t, 1, countStatus(ctx, t, pool, db.StatusInReview))
		require.Equal(t, 1, countStatus(ctx, t, pool, db.StatusPendingReview))
	})

	t.Run("a fair claim is refused", func(t *testing.T) {
		t.Parallel()
		_, _, committed, err := db.CommitInReviewAndClaim(ctx, nil, &db.InReviewParams{}, &db.ClaimParams{Limit: 1, Fair: &db.FairParams{}}, nil)
		require.Error(t, err)
		require.False(t, committed)
	})
}

func mustConnect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	return conn
}

// TestClaimMore: a second claim in the claim's own transaction takes
// other jobs only when told which it holds (SKIP LOCKED does not pass over
// a transaction's own locks); MarkInReview records a batch and leaves the
// transaction open, so nothing is visible until the COMMIT.
func TestClaimMore(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	_, err := db.InsertJobs(ctx, s.Pool, []db.NewJob{{Title: "a"}, {Title: "b"}, {Title: "c"}, {Title: "d"}, {Title: "e"}})
	require.NoError(t, err)
	conn := mustConnect(ctx, t, s.URL)
	first, err := db.BeginClaim(ctx, conn, 2, nil)
	require.NoError(t, err)
	require.Len(t, first, 2)

	again, _, err := db.ClaimMore(ctx, conn, &db.ClaimParams{Limit: 2}, nil)
	require.NoError(t, err)
	require.ElementsMatch(t, ids(first), ids(again), "without Except, its own rows again")

	second, c, err := db.ClaimMore(ctx, conn, &db.ClaimParams{Limit: 2, Except: ids(first)}, nil)
	require.NoError(t, err)
	require.Len(t, second, 2)
	require.True(t, c.More)
	require.Empty(t, intersect(ids(first), ids(second)))

	require.NoError(t, db.MarkInReview(ctx, conn, inReview(first)))
	require.Equal(t, byte('T'), conn.PgConn().TxStatus(), "still in the transaction")
	require.Zero(t, countStatus(ctx, t, s.Pool, db.StatusInReview), "nothing committed")
	other, err := db.BeginClaim(ctx, mustConnect(ctx, t, s.URL), 10, nil)
	require.NoError(t, err)
	require.Len(t, other, 1, "the four claimed jobs are locked")

	require.NoError(t, db.CommitInReview(ctx, conn, inReview(second)))
	require.Equal(t, 4, countStatus(ctx, t, s.Pool, db.StatusInReview))

	_, _, err = db.ClaimMore(ctx, conn, &db.ClaimParams{Limit: 2, Fair: &db.FairParams{}}, nil)
	require.ErrorContains(t, err, "fair claim")
}

func ids(jobs []db.Job) []string {
	out := make([]string, len(jobs))
	for i := range jobs {
		out[i] = jobs[i].ID
	}
	return out
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
