package relay

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// ageReviewed marks n pending jobs reviewed, their updated_at age ago.
func (b *testBundle) ageReviewed(t *testing.T, n int, age time.Duration) {
	t.Helper()
	_, err := b.schema.Pool.Exec(testenv.Context(t), `
UPDATE jobs SET status = 'reviewed', updated_at = now() - $2::interval
WHERE id IN (SELECT id FROM jobs WHERE status = 'pending_review' LIMIT $1)`, n, age)
	require.NoError(t, err)
}

// Issue 11, item 5: the archiver moves jobs reviewed longer ago than
// ArchiveAfter to archived, in batches, and counts and logs it; newer
// reviewed jobs and the pipeline's own are left alone.
func TestArchiver(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 75)
	b.ageReviewed(t, 50, 2*time.Hour)
	b.ageReviewed(t, 10, 30*time.Minute)
	cfg := b.cfg
	cfg.ArchiveAfter = time.Hour
	cfg.archiveInterval = 20 * time.Millisecond
	cfg.archiveBatchSize = 7 // several batches per run
	r := b.newRelay(t, cfg)
	startRelay(t, r)

	require.Eventually(t, func() bool {
		c, err := db.CountByStatus(ctx, b.schema.Pool)
		require.NoError(t, err)
		return c[db.StatusArchived] == 50 && c[db.StatusInReview] == 15
	}, 30*time.Second, 5*time.Millisecond)
	c, err := db.CountByStatus(ctx, b.schema.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 10, c[db.StatusReviewed], "jobs reviewed since ArchiveAfter stay reviewed")
	require.InDelta(t, 50, counterValue(t, r.m.JobsArchived), 0)
	require.Eventually(t, func() bool { return len(b.logger.Matching("relay: archived reviewed jobs")) > 0 },
		30*time.Second, 5*time.Millisecond)
	require.Zero(t, counterValue(t, r.m.Errors.WithLabelValues("archive")))
}

// Archive takes no long locks and waits for none: a row another
// transaction holds is skipped, and archived by a later run.
func TestArchiveSkipsLockedRows(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 30)
	b.ageReviewed(t, 30, 48*time.Hour)

	tx, err := b.schema.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var held string
	require.NoError(t, tx.QueryRow(ctx, `SELECT id::text FROM jobs LIMIT 1 FOR UPDATE`).Scan(&held))

	var batches []int64
	n, err := Archive(ctx, b.schema.Pool, &ArchiveParams{OlderThan: 24 * time.Hour, BatchSize: 10,
		StatementTimeout: 5 * time.Second, OnBatch: func(n int64) { batches = append(batches, n) }})
	require.NoError(t, err, "a held row is skipped, not waited for")
	require.EqualValues(t, 29, n)
	require.Equal(t, []int64{10, 10, 9}, batches)
	require.NoError(t, tx.Rollback(ctx))

	n, err = Archive(ctx, b.schema.Pool, &ArchiveParams{OlderThan: 24 * time.Hour})
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the held row, once released")
	var status string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT status FROM jobs WHERE id = $1`, held).Scan(&status))
	require.Equal(t, db.StatusArchived, status)

	_, err = Archive(ctx, b.schema.Pool, &ArchiveParams{OlderThan: time.Second})
	require.Error(t, err, "OlderThan below ArchiveAfterMin")
}
