package consumer

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/stream"
)

func TestNewRefusesARedisClientThatIgnoresContexts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	opts := *b.rdb.Options()
	opts.ContextTimeoutEnabled = false
	rdb := redis.NewClient(&opts)
	defer rdb.Close()
	_, err := New(b.schema.Pool, rdb, cfg)
	require.ErrorIs(t, err, stream.ErrNoContextTimeout)

	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": opts.Addr}})
	defer ring.Close()
	_, err = New(b.schema.Pool, ring, cfg)
	require.ErrorIs(t, err, stream.ErrNoContextTimeout)
}

func TestNewRegistersMetricsOnTheRegisterer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	cfg.Registerer = reg
	_, err := New(b.schema.Pool, b.rdb, cfg)
	require.NoError(t, err)
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	require.Contains(t, names, "jobrelay_consumer_jobs_total")
	require.Contains(t, names, "jobrelay_consumer_recorder_stalled")
	require.Contains(t, names, "jobrelay_stream_trimmed_entries_total")

	_, err = New(b.schema.Pool, b.rdb, cfg)
	require.ErrorContains(t, err, "register consumer metrics")
}
