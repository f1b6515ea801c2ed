package testenv

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// RequireNewChecksItsClient checks what relay.New and consumer.New promise
// of the Redis client they are given: newWith refuses a nil client, and
// any client (plain, Ring or Cluster) that does not honour context
// deadlines. rdb is a working client whose options the bad ones copy.
func RequireNewChecksItsClient(t testing.TB, rdb *redis.Client, newWith func(redis.UniversalClient) error) {
	t.Helper()
	opts := *rdb.Options()
	opts.ContextTimeoutEnabled = false
	plain := redis.NewClient(&opts)
	defer plain.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": opts.Addr}})
	defer ring.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{opts.Addr}})
	defer cluster.Close()
	for _, c := range []redis.UniversalClient{plain, ring, cluster} {
		require.ErrorContains(t, newWith(c), "ContextTimeoutEnabled", "%T", c) // stream.ErrNoContextTimeout
	}
	require.ErrorContains(t, newWith(nil), "nil")
}

// RequireNewRegistersMetrics checks that newWith registers its metrics on
// the Registerer it is given, among them the names in want, and that a
// second registration on the same registry is an error that says register,
// not a panic, and leaves the registry as it was. It returns how many
// metric families were registered.
func RequireNewRegistersMetrics(t testing.TB, newWith func(prometheus.Registerer) error, want ...string) int {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, newWith(reg))
	names := func() []string {
		families, err := reg.Gather()
		require.NoError(t, err)
		var out []string
		for _, f := range families {
			out = append(out, f.GetName())
		}
		return out
	}
	registered := names()
	for _, name := range want {
		require.Contains(t, registered, name)
	}
	require.ErrorContains(t, newWith(reg), "register")
	require.Equal(t, registered, names(), "a refused registration left metrics behind")
	return len(registered)
}
