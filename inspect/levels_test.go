package inspect

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Each priority and tenant has its pending count and oldest age, in the
// snapshot and as gauges; tenants beyond the cap are summed as "other".
func TestLevelsInSnapshotAndGauges(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	_, err := schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, priority, tenant, created_at)
SELECT 'j', CASE WHEN i <= 3 THEN 10 ELSE 0 END, CASE WHEN i <= 5 THEN NULL ELSE 'acme' END, now() - interval '1 hour'
FROM generate_series(1, 8) AS i;
INSERT INTO jobs (title, tenant) SELECT 'many', 't' || i FROM generate_series(1, 60) AS i`)
	require.NoError(t, err)

	s, err := Take(ctx, schema.Pool, rdb, Options{Stream: stream})
	require.NoError(t, err)
	require.Len(t, s.Backlog.ByPriority, 2)
	require.Equal(t, Level{Priority: "10", Pending: 3}, Level{Priority: s.Backlog.ByPriority[0].Priority, Pending: s.Backlog.ByPriority[0].Pending})
	require.Equal(t, "0", s.Backlog.ByPriority[1].Priority)
	require.InDelta(t, 3600, s.Backlog.ByPriority[0].OldestPendingAgeSecs, 60)
	require.Len(t, s.Backlog.ByTenant, 51, "50 tenants, then other")
	require.Equal(t, "default", s.Backlog.ByTenant[0].Tenant)
	require.EqualValues(t, 5, s.Backlog.ByTenant[0].Pending)
	require.Equal(t, "other", s.Backlog.ByTenant[50].Tenant)

	c := NewCollector(schema.Pool, rdb, CollectorConfig{Stream: stream})
	c.snap = s
	g := gauges(t, c)
	require.InDelta(t, 3, g["jobrelay_jobs_pending_by_priority{priority=10}"], 0)
	require.InDelta(t, 65, g["jobrelay_jobs_pending_by_priority{priority=0}"], 0)
	require.InDelta(t, 5, g["jobrelay_jobs_pending_by_tenant{tenant=default}"], 0)
	require.InDelta(t, 3, g["jobrelay_jobs_pending_by_tenant{tenant=acme}"], 0)
	require.Positive(t, g["jobrelay_jobs_pending_by_tenant{tenant=other}"])
	require.Greater(t, g["jobrelay_jobs_oldest_pending_age_by_tenant_seconds{tenant=acme}"], 3000.0)
	series := 0
	for name := range g {
		if len(name) > len("jobrelay_jobs_pending_by_tenant") && name[:len("jobrelay_jobs_pending_by_tenant")] == "jobrelay_jobs_pending_by_tenant" {
			series++
		}
	}
	require.Equal(t, 51, series, "bounded labels")
}
