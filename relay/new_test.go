package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/stream"
)

func TestNewRefusesARedisClientThatIgnoresContexts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := *b.rdb.Options()
	opts.ContextTimeoutEnabled = false
	rdb := redis.NewClient(&opts)
	defer rdb.Close()
	_, err := New(b.schema.Pool, rdb, b.cfg)
	require.ErrorIs(t, err, stream.ErrNoContextTimeout)
	require.ErrorContains(t, err, "ContextTimeoutEnabled")

	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{opts.Addr}})
	defer cluster.Close()
	_, err = New(b.schema.Pool, cluster, b.cfg)
	require.ErrorIs(t, err, stream.ErrNoContextTimeout)

	_, err = New(b.schema.Pool, nil, b.cfg)
	require.ErrorContains(t, err, "nil")
}

func TestNewRegistersMetricsOnTheRegisterer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	cfg := b.cfg
	cfg.Registerer = reg
	_, err := New(b.schema.Pool, b.rdb, cfg)
	require.NoError(t, err)
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	require.Contains(t, names, "jobrelay_relay_jobs_relayed_total")
	require.Contains(t, names, "jobrelay_relay_cycles_total")
	require.Len(t, names, 14)

	// A second relay on the same registry is refused with an error, not a
	// panic, and leaves the registry as it was.
	_, err = New(b.schema.Pool, b.rdb, cfg)
	require.ErrorContains(t, err, "register relay metrics")
	again, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, again, 14)

	// Wrapped each with a label of its own, two relays share a registry.
	shared := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"relay": name}, shared)
		_, err = New(b.schema.Pool, b.rdb, cfg)
		require.NoError(t, err)
	}
}
