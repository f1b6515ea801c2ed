package main

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestRedisURLKinds(t *testing.T) {
	t.Parallel()
	cluster, err := parseRedisURL("redis://:pw@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000")
	require.NoError(t, err)
	require.NotNil(t, cluster.cluster)
	require.Equal(t, []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}, cluster.cluster.Addrs)
	require.Equal(t, "pw", cluster.cluster.Password)

	failover, err := parseRedisURL("redis://10.0.0.1:26379/2?master_name=main&addr=10.0.0.2:26379")
	require.NoError(t, err)
	require.NotNil(t, failover.failover)
	require.Equal(t, "main", failover.failover.MasterName)
	require.Equal(t, []string{"10.0.0.1:26379", "10.0.0.2:26379"}, failover.failover.SentinelAddrs)
	require.Equal(t, 2, failover.failover.DB)

	single, err := parseRedisURL("rediss://:pw@cache:6380/1")
	require.NoError(t, err)
	require.NotNil(t, single.single)
	require.Equal(t, 1, single.single.DB)

	_, err = parseRedisURL("redis://h:1?master_name=")
	require.Error(t, err)
	require.Error(t, checkRedisURL("redis://h:1?nonsense=1"))
	require.NoError(t, checkRedisURL("redis://h:1?addr=h:2"))
}

// TestOpenRedisKinds: each URL gives the client of its kind, and every one
// honours context deadlines (stream.CheckClient).
func TestOpenRedisKinds(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	srv := testenv.StartRedisServer(t)
	rdb, err := openRedis(ctx, srv.URL(), nil)
	require.NoError(t, err)
	defer rdb.Close()
	require.IsType(t, &redis.Client{}, rdb)
	require.Equal(t, "single", redisKind(rdb))
	require.True(t, rdb.(*redis.Client).Options().ContextTimeoutEnabled)

	c, err := openRedis(ctx, "redis://127.0.0.1:1?addr=127.0.0.1:2", nil)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "cluster", redisKind(c))
	require.True(t, c.(*redis.ClusterClient).Options().ContextTimeoutEnabled)
	require.Equal(t, clusterReloadInterval, c.(*redis.ClusterClient).Options().ClusterStateReloadInterval)

	f, err := openRedis(ctx, "redis://127.0.0.1:1?master_name=m", nil)
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, "sentinel", redisKind(f))
	require.True(t, f.(*redis.Client).Options().ContextTimeoutEnabled)
}
