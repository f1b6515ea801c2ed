package db_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// explainer is a DBTX that EXPLAINs every query before running it.
type explainer struct {
	db.DBTX
	t     *testing.T
	plans []string
}

func (e *explainer) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := e.DBTX.Query(ctx, "EXPLAIN "+sql, args...)
	require.NoError(e.t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(e.t, err)
	e.plans = append(e.plans, strings.Join(lines, "\n"))
	return e.DBTX.Query(ctx, sql, args...)
}

func (e *explainer) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return e.DBTX.Exec(ctx, sql, args...)
}

func TestPublishedBefore(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	// A table as it looks in production: many jobs reviewed, some in_review
	// (ours, another deployment's, some from before streams were recorded),
	// and a few without bookkeeping.
	_, err := s.Pool.Exec(ctx, `
INSERT INTO jobs (title, status) SELECT 'done', 'reviewed' FROM generate_series(1, 20000);
INSERT INTO jobs (title, status, stream_id, enqueued_at, stream)
  SELECT 'ours ' || i, 'in_review', '1-' || i, now() - i * interval '1 second', 'ours' FROM generate_series(1, 250) i;
INSERT INTO jobs (title, status, stream_id, enqueued_at, stream)
  SELECT 'theirs ' || i, 'in_review', '1-' || i, now() - i * interval '1 second', 'theirs' FROM generate_series(1, 250) i;
INSERT INTO jobs (title, status, stream_id, enqueued_at)
  SELECT 'legacy ' || i, 'in_review', '2-' || i, now() - i * interval '1 second' FROM generate_series(1, 30) i;
INSERT INTO jobs (title, status, updated_at) SELECT 'untracked ' || i, 'in_review', now() - interval '1 hour' FROM generate_series(1, 120) i;
INSERT INTO jobs (title, status) VALUES ('untracked, recent', 'in_review');
ANALYZE jobs`)
	require.NoError(t, err)

	// Paging through all of it, 100 at a time: untracked rows first, then
	// by publish time, nothing twice, nothing of the other stream.
	q := &explainer{DBTX: s.Pool, t: t}
	p := db.PublishedBeforeParams{Before: time.Now().Add(-time.Minute), Stream: "ours", Limit: 100}
	var all []db.InReviewJob
	for {
		page, err := db.PublishedBefore(ctx, q, &p)
		require.NoError(t, err)
		all = append(all, page...)
		if len(page) < p.Limit {
			break
		}
		p.After = page[len(page)-1]
	}
	seen := map[string]bool{}
	for i, j := range all {
		require.False(t, seen[j.ID], "job %s listed twice", j.ID)
		seen[j.ID] = true
		if i < 120 {
			require.Empty(t, j.StreamID, "rows without bookkeeping come first")
			require.True(t, j.EnqueuedAt.IsZero())
			continue
		}
		require.NotEmpty(t, j.StreamID)
		require.False(t, j.EnqueuedAt.Before(all[i-1].EnqueuedAt), "by publish time")
	}
	// The untracked ones an hour old (not the recent one), ours and the
	// legacy ones published at least a minute ago.
	var want int
	require.NoError(t, s.Pool.QueryRow(ctx, `
SELECT count(*) FROM jobs WHERE status = 'in_review' AND (stream = 'ours' OR stream IS NULL)
  AND coalesce(enqueued_at, updated_at) < now() - interval '1 minute'`).Scan(&want))
	require.Len(t, all, want)
	require.Greater(t, want, 300)

	require.Len(t, q.plans, len(all)/p.Limit+1)
	// Every scan goes through the partial index on in_review rows: no
	// walk of the table, nor of its primary key (the primary key may narrow
	// a bitmap of the partial index).
	for _, plan := range q.plans {
		require.Contains(t, plan, "jobs_in_review_enqueued_at_idx", plan)
		require.NotContains(t, plan, "Seq Scan", plan)
		require.NotRegexp(t, `(Index|Index Only) Scan using jobs_pkey`, plan)
		require.LessOrEqual(t, strings.Count(plan, "Bitmap Heap Scan"),
			strings.Count(plan, "Bitmap Index Scan on jobs_in_review_enqueued_at_idx"), plan)
	}
}

func TestReenqueueReturnsOnlyTheJobsItChanged(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	var lost, untracked, republished, reviewed string
	require.NoError(t, s.Pool.QueryRow(ctx, `
WITH j AS (
  INSERT INTO jobs (title, status, stream_id, enqueued_at) VALUES
    ('lost', 'in_review', '1-1', now()),
    ('untracked', 'in_review', NULL, NULL),
    ('published again', 'in_review', '2-2', now()),
    ('reviewed', 'reviewed', '1-4', now())
  RETURNING id::text, title)
SELECT (SELECT id FROM j WHERE title = 'lost'), (SELECT id FROM j WHERE title = 'untracked'),
       (SELECT id FROM j WHERE title = 'published again'), (SELECT id FROM j WHERE title = 'reviewed')`).
		Scan(&lost, &untracked, &republished, &reviewed))

	changed, err := db.Reenqueue(ctx, s.Pool, []db.InReviewJob{
		{ID: lost, StreamID: "1-1"},
		{ID: untracked},
		{ID: republished, StreamID: "1-3"}, // listed before its new attempt
		{ID: reviewed, StreamID: "1-4"},
	})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{lost, untracked}, changed)

	var lastErrors []string
	rows, err := s.Pool.Query(ctx, `SELECT last_error FROM jobs WHERE status = 'pending_review' ORDER BY title`)
	require.NoError(t, err)
	lastErrors, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{
		"stream entry 1-1 was lost before it was acknowledged; re-enqueued",
		"in_review without a stream entry recorded (left by another publisher, or by a migration); re-enqueued",
	}, lastErrors)

	changed, err = db.Reenqueue(ctx, s.Pool, nil)
	require.NoError(t, err)
	require.Empty(t, changed)
}

func TestCommitInReviewRecordsTheStream(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	_, err := db.InsertJobs(ctx, s.Pool, []db.NewJob{{Title: "a"}, {Title: "b"}, {Title: "c"}})
	require.NoError(t, err)
	conn, err := s.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	commit := func(stream string, n int) {
		t.Helper()
		jobs, err := db.BeginClaim(ctx, conn.Conn(), n, nil)
		require.NoError(t, err)
		require.Len(t, jobs, n)
		p := db.InReviewParams{EnqueuedAt: time.Now(), Stream: stream}
		for i, j := range jobs {
			p.IDs = append(p.IDs, j.ID)
			p.StreamIDs = append(p.StreamIDs, "1-"+string(rune('0'+i)))
		}
		require.NoError(t, db.CommitInReview(ctx, conn.Conn(), &p))
	}
	commit("review_a", 2)
	commit("", 1)
	byStream, err := db.CountInReviewByStream(ctx, s.Pool)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"review_a": 2, "": 1}, byStream, `"" records no stream`)
}
