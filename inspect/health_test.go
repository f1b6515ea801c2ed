package inspect

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestSnapshotHoldsFreshHealthReports(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	name := testenv.Stream(t, rdb)

	s, err := Take(ctx, schema.Pool, rdb, Options{Stream: name})
	require.NoError(t, err)
	require.Empty(t, s.Health)

	require.NoError(t, stream.ReportProblem(ctx, rdb, name, "consumer a", "recording results is stalled", time.Now()))
	s, err = Take(ctx, schema.Pool, rdb, Options{Stream: name})
	require.NoError(t, err)
	require.Len(t, s.Health, 1)
	require.Equal(t, "consumer a", s.Health[0].Component)
	require.Equal(t, "recording results is stalled", s.Health[0].Problem)

	c := NewCollector(nil, nil, CollectorConfig{})
	c.snap = s
	require.Equal(t, 1.0, gauges(t, c)["jobrelay_pipeline_problems"])

	// Reports outlive their refresh only until HealthStaleAfter.
	old, err := stream.Problems(ctx, rdb, name, time.Now().Add(stream.HealthStaleAfter+time.Second), stream.HealthStaleAfter)
	require.NoError(t, err)
	require.Empty(t, old)
	ttl, err := rdb.PTTL(ctx, stream.HealthKey(name)).Result()
	require.NoError(t, err)
	require.Positive(t, ttl, "the hash expires when nobody reports any more")
}
