package db_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// explain returns the plan of sql with args.
func explain(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(ctx, "EXPLAIN "+sql, args...)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// Claims stay index-driven on a big table: every claim reads a partial
// index of pending (or in_review) rows, never the table, and never sorts
// the backlog.
func TestClaimPlansReadPartialIndexes(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	_, err := s.Pool.Exec(ctx, `
INSERT INTO jobs (title, status, priority, tenant)
SELECT 'reviewed', 'reviewed', 0, 'tenant' || (i % 100) FROM generate_series(1, 100000) AS i;
INSERT INTO jobs (title, priority, tenant)
SELECT 'pending', i % 3, 'tenant' || (i % 100) FROM generate_series(1, 30000) AS i;
INSERT INTO jobs (title, status, stream_id, enqueued_at, tenant)
SELECT 'in review', 'in_review', '1-' || i, now(), 'tenant' || (i % 100) FROM generate_series(1, 2000) AS i;
ANALYZE jobs`)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, s.URL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))

	fairArgs := []any{100, []string{}, []string{"tenant1"}, []int32{3}, "tenant5", 0, []string{"tenant1", "tenant2", "tenant3", ""}}
	capArgs := []any{100, []string{}, []string{}, []int32{}, "", 5, []string{"tenant1", "tenant2", ""}}
	for _, c := range []struct {
		name, sql string
		args      []any
		index     []string
	}{
		{"by priority", db.ClaimSQL, []any{100}, []string{"jobs_pending_review_priority_idx"}},
		{"oldest", db.ClaimOldestSQL, []any{100}, []string{"jobs_pending_review_created_at_idx"}},
		{"fair", db.FairByPrioritySQL, fairArgs, []string{"jobs_pending_review_tenant_priority_idx"}},
		{"fair oldest", db.FairOldestSQL, fairArgs, []string{"jobs_pending_review_tenant_created_at_idx"}},
		{"tenants", db.ListTenantsSQL, nil, []string{"Index Scan Backward using jobs_pending_review_tenant"}},
		{"tenants to lock", db.LockTenantsSQL, nil, []string{"Index Scan Backward using jobs_pending_review_tenant"}},
		{"fair with a cap", db.FairByPrioritySQL, capArgs,
			[]string{"jobs_pending_review_tenant_priority_idx", "Index Scan using jobs_in_review_"}},
	} {
		plan := explain(ctx, t, conn, c.sql, c.args...)
		for _, idx := range c.index {
			require.Contains(t, plan, idx, "%s:\n%s", c.name, plan)
		}
		require.NotContains(t, plan, "Seq Scan on jobs", "%s:\n%s", c.name, plan)
		require.NotContains(t, plan, "Bitmap Heap Scan on jobs", "%s:\n%s", c.name, plan)
	}
}

// Migration 00005 adds the columns with their defaults to the rows there,
// and migrating down drops them only.
func TestPriorityTenantMigrationKeepsRows(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	m, err := db.NewMigrator(ctx, s.Pool, nil)
	require.NoError(t, err)
	defer m.Close()
	_, err = m.DownTo(ctx, 4)
	require.NoError(t, err)
	_, err = s.Pool.Exec(ctx, `INSERT INTO jobs (title) SELECT 'old' FROM generate_series(1, 10)`)
	require.NoError(t, err)
	_, err = m.Up(ctx)
	require.NoError(t, err)
	var n int
	require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE priority = 0 AND tenant IS NULL AND status = 'pending_review'`).Scan(&n))
	require.Equal(t, 10, n)
}

func TestReadLevelsCapsTenants(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	_, err := s.Pool.Exec(ctx, `
INSERT INTO jobs (title, priority, tenant, created_at)
SELECT 'p', i % 3, CASE WHEN i % 4 = 0 THEN NULL ELSE 't' || (i % 4) END, now() - i * interval '1 second'
FROM generate_series(1, 120) AS i;
INSERT INTO jobs (title, priority, tenant) VALUES ('few', 7, 'small');
INSERT INTO jobs (title, status, priority) VALUES ('done', 'reviewed', 9)`)
	require.NoError(t, err)
	byPriority, byTenant, err := db.ReadLevels(ctx, s.Pool, 2, 3)
	require.NoError(t, err)
	pending := func(ls []db.Level) []int64 {
		out := make([]int64, len(ls))
		for i := range ls {
			out[i] = ls[i].Pending
		}
		return out
	}
	require.Len(t, byPriority, 3)
	require.Equal(t, []int16{7, 2}, []int16{byPriority[0].Priority, byPriority[1].Priority})
	require.True(t, byPriority[2].Other)
	require.Equal(t, []int64{1, 40, 80}, pending(byPriority))
	require.Len(t, byTenant, 4)
	require.Equal(t, []string{"", "t1", "t2"}, []string{byTenant[0].Tenant, byTenant[1].Tenant, byTenant[2].Tenant})
	require.True(t, byTenant[3].Other)
	require.Equal(t, []int64{30, 30, 30, 31}, pending(byTenant))
	require.False(t, byTenant[0].OldestPending.IsZero())
}
