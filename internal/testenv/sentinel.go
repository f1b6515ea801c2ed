package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of StartSentinel monitor.
const SentinelMaster = "jobrelay"

// Sentinel is a primary, a replica and three sentinels that belong to one
// test, for tests that fail Redis over. The sentinels notice a dead primary
// after a second.
type Sentinel struct {
	t         testing.TB
	Primary   *RedisServer
	Replica   *RedisServer
	sentinels []*RedisServer
}

// StartSentinel starts the primary, its replica and three sentinels on
// free ports, waits until the replica is in sync and the sentinels agree
// on the primary, and stops them all when the test ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t}
	s.Primary = StartRedisServer(t, "--repl-diskless-sync-delay", "0")
	s.Replica = StartRedisServer(t, "--repl-diskless-sync-delay", "0",
		"--replicaof", "127.0.0.1", strconv.Itoa(s.Primary.port))
	for range 3 {
		dir := t.TempDir()
		port := freePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\nsentinel parallel-syncs %s 1\n",
			port, dir, SentinelMaster, s.Primary.port, SentinelMaster, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("write sentinel.conf: %v", err)
		}
		sn := &RedisServer{t: t, port: port, dir: dir, conf: conf}
		sn.Start()
		t.Cleanup(sn.Stop)
		s.sentinels = append(s.sentinels, sn)
	}
	s.waitReplicated(time.Minute)
	s.waitPrimary(s.Primary.Addr(), time.Minute)
	return s
}

// URL is a REDIS_URL through the sentinels, in go-redis's failover URL form.
func (s *Sentinel) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + s.sentinels[0].Addr() + "/0?master_name=" + SentinelMaster)
	for _, sn := range s.sentinels[1:] {
		b.WriteString("&addr=" + sn.Addr())
	}
	return b.String()
}

// Failover kills the primary, as a crash would, and waits until the
// sentinels have promoted the replica.
func (s *Sentinel) Failover(timeout time.Duration) {
	s.t.Helper()
	s.Primary.Stop()
	s.waitPrimary(s.Replica.Addr(), timeout)
}

// waitPrimary waits until every sentinel names addr as the primary, and
// it says it is one.
func (s *Sentinel) waitPrimary(addr string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problem := ""
		for _, sn := range s.sentinels {
			if got := sentinelPrimary(sn.Addr()); got != addr {
				problem = fmt.Sprintf("sentinel %s names %q as the primary", sn.Addr(), got)
				break
			}
		}
		if problem == "" && !strings.Contains(info(addr, "replication"), "role:master") {
			problem = addr + " is not a primary yet"
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sentinels: %s", problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Sentinel) waitReplicated(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(info(s.Replica.Addr(), "replication"), "master_link_status:up") {
		if time.Now().After(deadline) {
			s.t.Fatalf("the replica %s did not sync with %s", s.Replica.Addr(), s.Primary.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sentinelPrimary is the primary the sentinel at addr names, or "".
func sentinelPrimary(addr string) string {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil || len(hp) != 2 {
		return ""
	}
	return hp[0] + ":" + hp[1]
}

// info is a section of INFO of the server at addr, or "" if it does not
// answer.
func info(addr, section string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	text, _ := rdb.Info(ctx, section).Result()
	return text
}
