package testenv

import (
	"context"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of redis-server processes that belongs to
// one test: masters primaries, each with replicas replicas. Its nodes fail
// over quickly (cluster-node-timeout 1s), for tests that kill a primary.
type RedisCluster struct {
	t     testing.TB
	Nodes []*RedisServer
}

// clusterPortMax is the highest port a cluster node may take: its cluster
// bus listens on port + 10000.
const clusterPortMax = 55535

// StartRedisCluster starts a cluster on free ports (each at most 55535,
// with port + 10000 free for the cluster bus), joins it with redis-cli
// --cluster create, and waits until every node reports it ok. It stops
// when the test ends.
func StartRedisCluster(t testing.TB, masters, replicas int) *RedisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed: %v", err)
	}
	c := &RedisCluster{t: t}
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		s := &RedisServer{t: t, port: clusterPort(t), dir: t.TempDir(), args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000",
			// A replica takes over however long it was cut off.
			"--cluster-replica-validity-factor", "0",
			// Replicas sync at once, not after the 5s default wait.
			"--repl-diskless-sync-delay", "0",
		}}
		s.Start()
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(time.Minute)
	return c
}

// clusterPort finds a port at most clusterPortMax that is free, with its
// bus port free too.
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 1000 {
		p := 20000 + rand.IntN(clusterPortMax-20000)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p
	}
	t.Fatalf("no free port pair for a cluster node")
	return 0
}

// URL is a REDIS_URL naming every node, in go-redis's cluster URL form.
func (c *RedisCluster) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + c.Nodes[0].Addr())
	for i, n := range c.Nodes[1:] {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString("addr=" + n.Addr())
	}
	return b.String()
}

// Client returns a cluster client, closed when the test ends.
func (c *RedisCluster) Client() *redis.ClusterClient {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// WaitHealthy waits until every running node says cluster_state:ok, every
// slot is served, and every running replica is in sync with its primary.
func (c *RedisCluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var bad string
		for _, n := range c.Nodes {
			if n.cmd == nil {
				continue // stopped
			}
			bad = clusterProblem(n.Addr())
			if bad != "" {
				break
			}
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster did not become healthy: %s", bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterProblem says what is wrong with the cluster as the node at addr
// sees it, or "".
func clusterProblem(addr string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := rdb.ClusterInfo(ctx).Result()
	switch {
	case err != nil:
		return addr + ": " + err.Error()
	case !strings.Contains(info, "cluster_state:ok"):
		return addr + ": cluster_state not ok"
	case !strings.Contains(info, "cluster_slots_ok:16384"):
		return addr + ": not every slot is served"
	}
	repl, err := rdb.Info(ctx, "replication").Result()
	switch {
	case err != nil:
		return addr + ": " + err.Error()
	case strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up"):
		return addr + ": replica not in sync with its primary"
	}
	return ""
}

// MasterOf returns the node serving key's slot as a primary, as the
// cluster's nodes see it now.
func (c *RedisCluster) MasterOf(ctx context.Context, rdb *redis.ClusterClient, key string) *RedisServer {
	c.t.Helper()
	node, err := rdb.MasterForKey(ctx, key)
	if err != nil {
		c.t.Fatalf("find the primary of %s: %v", key, err)
	}
	addr := node.Options().Addr
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	c.t.Fatalf("the primary of %s, %s, is not a node of the cluster", key, addr)
	return nil
}
