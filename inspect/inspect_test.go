package inspect

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gauges gathers the collector's metrics as "name{labels}" → value.
func gauges(t *testing.T, c *Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var nameSb32 strings.Builder
			for _, l := range m.GetLabel() {
				nameSb32.WriteString("{" + l.GetName() + "=" + l.GetValue() + "}")
			}
			name += nameSb32.String()
			out[name] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestGaugesFollowThePipeline(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)

	c := NewCollector(schema.Pool, rdb, CollectorConfig{Stream: stream, Interval: 20 * time.Millisecond, Logger: testenvLogger()})
	require.Empty(t, gauges(t, c), "nothing before the first snapshot")
	runCollector(ctx, t, c)

	require.Eventually(t, func() bool { _, ok := gauges(t, c)["jobrelay_jobs_pending"]; return ok }, time.Minute, time.Millisecond)
	require.Zero(t, gauges(t, c)["jobrelay_jobs_pending"])

	_, err := schema.Pool.Exec(ctx, `INSERT INTO jobs (title, created_at) VALUES ('a', now() - interval '10 minutes'), ('b', now())`)
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"job_id", "x"}}).Err())
	}
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "workers", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w", Streams: []string{stream, ">"}, Count: 1}).Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{" + stream + "}:dead", Values: []any{"job_id", "y"}}).Err())

	require.Eventually(t, func() bool { return gauges(t, c)["jobrelay_stream_group_pending{group=workers}"] == 1 }, time.Minute, time.Millisecond)
	g := gauges(t, c)
	require.Equal(t, 2.0, g["jobrelay_jobs_pending"])
	require.InDelta(t, 600, g["jobrelay_jobs_oldest_pending_age_seconds"], 30)
	require.Equal(t, 3.0, g["jobrelay_stream_length"])
	require.Equal(t, 3.0, g["jobrelay_stream_entries_added"])
	require.Equal(t, 2.0, g["jobrelay_stream_group_lag{group=workers}"])
	require.Equal(t, 1.0, g["jobrelay_stream_group_consumers{group=workers}"])
	require.Greater(t, g["jobrelay_stream_oldest_pending_entry_age_seconds{group=workers}"], 0.0)
	require.Equal(t, 1.0, g["jobrelay_dead_letter_length"])
	require.Less(t, g["jobrelay_pipeline_snapshot_age_seconds"], 60.0)
}

func testenvLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestOldestInReviewCountsJobsWithoutBookkeeping(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	// One job published 5 minutes ago, one in_review for an hour without
	// an entry recorded (the old poller's).
	_, err := schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, status, stream_id, enqueued_at) VALUES ('published', 'in_review', '1-1', now() - interval '5 minutes');
INSERT INTO jobs (title, status, updated_at) VALUES ('left by the old poller', 'in_review', now() - interval '1 hour')`)
	require.NoError(t, err)

	snap, err := Take(ctx, schema.Pool, rdb, Options{Stream: stream})
	require.NoError(t, err)
	require.EqualValues(t, 2, snap.Backlog.InReview)
	require.EqualValues(t, 1, snap.Backlog.InReviewUntracked)
	require.WithinDuration(t, time.Now().Add(-time.Hour), snap.Backlog.OldestInReviewAt, time.Minute)

	c := NewCollector(nil, nil, CollectorConfig{})
	c.snap = snap
	g := gauges(t, c)
	require.InDelta(t, time.Hour.Seconds(), g["jobrelay_jobs_oldest_in_review_age_seconds"], 60)
	require.Equal(t, 1.0, g["jobrelay_jobs_in_review_untracked"])
}

// runCollector runs c until the test ends.
func runCollector(ctx context.Context, t *testing.T, c *Collector) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(runCtx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}
