package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Issue 11, item 5: `jobrelay archive --older-than 30d` archives by hand
// what the relays' archiver does with ARCHIVE_AFTER.
func TestArchiveCommand(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	pl := newPipeline(t)
	testenv.Seed(t, pl.schema.Pool, 2500)
	_, err := pl.schema.Pool.Exec(ctx, `
UPDATE jobs SET status = 'reviewed', updated_at = now() - interval '40 days'
WHERE id IN (SELECT id FROM jobs LIMIT 2100)`)
	require.NoError(t, err)
	_, err = pl.schema.Pool.Exec(ctx, `
UPDATE jobs SET status = 'reviewed', updated_at = now() - interval '29 days'
WHERE id IN (SELECT id FROM jobs WHERE status = 'pending_review' LIMIT 100)`)
	require.NoError(t, err)
	env := []string{"DATABASE_URL=" + pl.schema.URL, "PATH=/usr/bin:/bin"}
	dir := t.TempDir()

	for _, args := range [][]string{
		{"archive"},
		{"archive", "--older-than", "30s"},
		{"archive", "--older-than", "thirty days"},
	} {
		code, out := runBinary(t, dir, env, args...)
		require.Equal(t, 2, code, out)
	}
	code, out := runBinary(t, dir, env, "archive", "--older-than", "30d")
	require.Zero(t, code, out)
	require.Contains(t, out, "2100 reviewed job(s) archived")
	c := counts(t, pl)
	require.EqualValues(t, 2100, c[db.StatusArchived])
	require.EqualValues(t, 100, c[db.StatusReviewed], "reviewed 29 days ago: kept")
	require.EqualValues(t, 300, c[db.StatusPendingReview])

	code, out = runBinary(t, dir, env, "archive", "--older-than", "28d12h")
	require.Zero(t, code, out)
	require.Contains(t, out, "100 reviewed job(s) archived")
}

func TestParseDays(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "1d12h": 36 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute,
		"0": 0, "0d": 0, "2d30m": 48*time.Hour + 30*time.Minute,
	} {
		got, err := parseDays(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "30", "1.5d", "-1d", "1d-2h", "30days", "month"} {
		_, err := parseDays(in)
		require.Error(t, err, in)
	}
}
