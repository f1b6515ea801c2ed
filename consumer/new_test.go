package consumer

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestNewRefusesARedisClientThatIgnoresContexts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	testenv.RequireNewChecksItsClient(t, b.rdb, func(rdb redis.UniversalClient) error {
		_, err := New(b.schema.Pool, rdb, cfg)
		return err
	})
}

func TestNewRegistersMetricsOnTheRegisterer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	testenv.RequireNewRegistersMetrics(t, func(reg prometheus.Registerer) error {
		cfg.Registerer = reg
		_, err := New(b.schema.Pool, b.rdb, cfg)
		return err
	}, "jobrelay_consumer_jobs_total", "jobrelay_consumer_recorder_stalled", "jobrelay_stream_trimmed_entries_total")
}
