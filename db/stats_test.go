package db_test

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Issue 11, item 5: on a table of millions, status counts what partial
// indexes hold and estimates the reviewed and archived jobs from the
// table's statistics, instead of reading every row.
func TestReadJobCounts(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	testenv.Seed(t, s.Pool, 1000)
	_, err := s.Pool.Exec(ctx, `
UPDATE jobs SET status = CASE WHEN n <= 600 THEN 'reviewed' WHEN n <= 900 THEN 'archived' WHEN n <= 920 THEN 'failed' WHEN n <= 950 THEN 'in_review' ELSE status END
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM jobs) o WHERE jobs.id = o.id`)
	require.NoError(t, err)
	want := map[string]int64{db.StatusReviewed: 600, db.StatusArchived: 300, db.StatusFailed: 20, db.StatusInReview: 30, db.StatusPendingReview: 50}

	small, err := db.ReadJobCounts(ctx, s.Pool)
	require.NoError(t, err)
	require.Equal(t, want, small.ByStatus, "a small table is counted")
	require.Empty(t, small.Estimated)

	_, err = s.Pool.Exec(ctx, `VACUUM ANALYZE jobs`)
	require.NoError(t, err)
	big, err := db.ReadJobCountsAbove(ctx, s.Pool, 500)
	require.NoError(t, err)
	require.Equal(t, []string{db.StatusReviewed, db.StatusArchived}, big.Estimated)
	for _, st := range []string{db.StatusPendingReview, db.StatusInReview, db.StatusFailed} {
		require.Equal(t, want[st], big.ByStatus[st], "%s is counted", st)
	}
	// ANALYZE read the whole (small) table: the estimates are exact here.
	require.InDelta(t, 600, big.ByStatus[db.StatusReviewed], 30)
	require.InDelta(t, 300, big.ByStatus[db.StatusArchived], 30)
}

// Issue 11, item 5: the queries that run all the time read the partial
// indexes, never the whole table, however many jobs were reviewed.
func TestHotQueriesUseThePartialIndexes(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	require.NoError(t, db.GenerateReviewedJobs(ctx, s.Pool, 1, 50_000))
	testenv.Seed(t, s.Pool, 200)
	_, err := s.Pool.Exec(ctx, `
UPDATE jobs SET status = 'in_review', stream_id = '1-1', enqueued_at = now(), stream = 'job_review'
WHERE id IN (SELECT id FROM jobs WHERE status = 'pending_review' LIMIT 50)`)
	require.NoError(t, err)
	_, err = s.Pool.Exec(ctx, `VACUUM ANALYZE jobs`)
	require.NoError(t, err)

	plans, err := db.ExplainHotQueries(ctx, s.Pool)
	require.NoError(t, err)
	// The partial indexes each query may read: the planner picks among the
	// pending_review ones (by created_at, priority or tenant) by their size.
	want := map[string]*regexp.Regexp{
		"relay claim":     regexp.MustCompile(`^jobs_pending_review_`),
		"reaper page":     regexp.MustCompile(`^jobs_in_review_enqueued_at_idx$`),
		"metrics backlog": regexp.MustCompile(`^jobs_(in_review_enqueued_at_idx|pending_review_.*)$`),
		"status counts":   regexp.MustCompile(`^jobs_(failed_updated_at_idx|in_review_enqueued_at_idx|pending_review_.*)$`),
		"archiver batch":  regexp.MustCompile(`^jobs_(pkey|reviewed_updated_at_idx)$`),
	}
	require.Len(t, plans, len(want))
	for _, p := range plans {
		require.False(t, p.SeqScan, "%s reads the table: %v", p.Query, p)
		require.NotEmpty(t, p.Indexes, p.Query)
		for _, idx := range p.Indexes {
			require.Regexp(t, want[p.Query], idx, p.Query)
		}
	}
}
