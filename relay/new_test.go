package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestNewRefusesARedisClientThatIgnoresContexts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testenv.RequireNewChecksItsClient(t, b.rdb, func(rdb redis.UniversalClient) error {
		_, err := New(b.schema.Pool, rdb, b.cfg)
		return err
	})
}

func TestNewRegistersMetricsOnTheRegisterer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	n := testenv.RequireNewRegistersMetrics(t, func(reg prometheus.Registerer) error {
		cfg.Registerer = reg
		_, err := New(b.schema.Pool, b.rdb, cfg)
		return err
	}, "jobrelay_relay_jobs_relayed_total", "jobrelay_relay_cycles_total")
	require.Equal(t, 14, n)

	// Wrapped each with a label of its own, two relays share a registry.
	shared := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"relay": name}, shared)
		_, err := New(b.schema.Pool, b.rdb, cfg)
		require.NoError(t, err)
	}
}
