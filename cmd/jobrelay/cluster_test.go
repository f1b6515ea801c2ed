//go:build scale

// The Redis Cluster and Sentinel runs start 15 servers and 15 processes:
// under the other packages' timing-sensitive tests they would load the
// machine those count on. `make test` runs them on their own, after the
// rest (go test -tags scale -run 'TestRedisCluster|TestSentinelFailover').

package main

import (
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/sample"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// clusterJobs is the jobs of each cluster run, inserted in clusterBursts.
const (
	clusterJobs   = 20_000
	clusterBursts = 4
)

// TestRedisCluster runs three relays and two consumers of the binary on a
// 3-primary, 3-replica Redis Cluster with STREAM_PARTITIONS=6, over 20,000
// jobs: once with every node up, once while a primary is killed mid-run
// and its replica takes over.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	t.Run("partitions", func(t *testing.T) {
		t.Parallel()
		clusterRun(t, false)
	})
	t.Run("primary killed", func(t *testing.T) {
		t.Parallel()
		clusterRun(t, true)
	})
}

func clusterRun(t *testing.T, killPrimary bool) {
	t.Helper()
	ctx := testenv.Context(t)
	cluster := testenv.StartRedisCluster(t, 3, 1)
	rdb := cluster.Client()
	schema := testenv.NewSchema(t)
	service := &reviewLog{calls: map[string]int{}}
	review := httptest.NewServer(service)
	defer review.Close()

	// A single node's URL: jobrelay finds out it is a cluster node.
	env := append(chaosEnv(schema.URL, "redis://"+cluster.Nodes[0].Addr()+"/0", review.URL), "STREAM_PARTITIONS=6")
	if killPrimary {
		env = append(chaosEnv(schema.URL, cluster.URL(), review.URL), "STREAM_PARTITIONS=6")
	}
	dir := t.TempDir()
	relays, consumers := startChaosPipeline(t, dir, env)

	partitions := stream.Partitions("job_review", 6)
	primaries := map[string]bool{}
	for _, p := range partitions {
		primaries[cluster.MasterOf(ctx, rdb, p).Addr()] = true
	}
	require.GreaterOrEqual(t, len(primaries), 2, "the partitions sit on at least 2 primaries")

	rng := rand.New(rand.NewPCG(11, 11))
	var killedAt time.Time
	var killed string
	for burst := range clusterBursts {
		_, err := db.InsertJobs(ctx, schema.Pool, sample.Jobs(rng, clusterJobs/clusterBursts))
		require.NoError(t, err)
		if killPrimary && burst == 1 {
			// Mid-run: entries are being published to and read from
			// every partition.
			require.Eventually(t, func() bool {
				c, err := db.CountByStatus(ctx, schema.Pool)
				require.NoError(t, err)
				return c[db.StatusReviewed] > clusterJobs/clusterBursts/2
			}, time.Minute, 20*time.Millisecond)
			node := cluster.MasterOf(ctx, rdb, partitions[0])
			killed = node.Addr()
			node.Stop() // SIGKILL: what it had not yet replicated is lost
			killedAt = time.Now()
		}
		time.Sleep(200 * time.Millisecond) // bursts arrive apart
	}

	reviewed := func() int64 {
		c, err := db.CountByStatus(ctx, schema.Pool)
		require.NoError(t, err)
		return c[db.StatusReviewed]
	}
	require.Eventually(t, func() bool { return reviewed() == clusterJobs }, 4*time.Minute, 50*time.Millisecond,
		"every job reviewed")
	done := time.Now()
	requireOnlyReviewed(ctx, t, schema.Pool, clusterJobs)
	distinct, total := service.counts()
	require.Equal(t, clusterJobs, distinct, "every job reached the handler")

	// Every stream the jobs went to is a partition, and each got jobs.
	var byStream map[string]int64
	rows, err := schema.Pool.Query(ctx, `SELECT coalesce(stream, ''), count(*) FROM jobs GROUP BY 1`)
	require.NoError(t, err)
	byStream = map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		require.NoError(t, rows.Scan(&s, &n))
		byStream[s] = n
	}
	require.NoError(t, rows.Err())
	if killPrimary {
		// A batch whose publish failed on the killed node rolled back, but
		// its entries on the other partitions were read: their handlers'
		// success is kept, and the rows, never in_review, record no stream.
		t.Logf("jobs reviewed from an entry of a batch that rolled back: %d", byStream[""])
		delete(byStream, "")
	}
	require.Len(t, byStream, 6, "jobs by stream: %v", byStream)
	for _, p := range partitions {
		require.Positive(t, byStream[p], "partition %s got no job", p)
	}

	// redis-cli follows the partition to its node.
	out, err := exec.CommandContext(ctx, "redis-cli", "-c", "-h", "127.0.0.1", "-p", portOf(cluster.Nodes[len(cluster.Nodes)-1].Addr()),
		"XINFO", "STREAM", partitions[3]).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "entries-added")

	if !killPrimary {
		// One entry per job and attempt: each publish of a (job, attempt)
		// adds one entry, however often it was tried.
		var attempts, added int64
		require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT sum(attempts) FROM jobs`).Scan(&attempts))
		for _, p := range partitions {
			info, err := rdb.XInfoStream(ctx, p).Result()
			require.NoError(t, err)
			added += info.EntriesAdded
		}
		require.Equal(t, attempts, added, "entries added to the partitions, against attempts published")
		require.EqualValues(t, clusterJobs, attempts, "no job needed a second attempt")
		t.Logf("cluster: %d jobs over %d partitions on %d primaries, reviewed, %d entries for %d attempts (duplicates: 0), "+
			"%d duplicate handler calls", clusterJobs, len(partitions), len(primaries), added, attempts, total-distinct)
		return
	}

	var again int64
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE attempts > 1`).Scan(&again))
	t.Logf("cluster, primary %s killed: %d jobs reviewed %s after the kill; %d re-enqueued by the reaper; %d duplicate handler calls",
		killed, clusterJobs, done.Sub(killedAt).Round(100*time.Millisecond), again, total-distinct)
	requireNoLogStorm(t, append(relays, consumers...))
}

// requireNoLogStorm checks that a failover shows in a few lines per
// process, not in a storm of one per retry (the retries go on for the
// whole failover, many seconds): a failed cycle, a failed trim, a relay's
// reaper saying once that it re-enqueued jobs whose entries the lost
// primary took with it, a consumer's claims lost in two refresh rounds.
func requireNoLogStorm(t *testing.T, procs []*proc) {
	t.Helper()
	for i, p := range procs {
		lines := problemLines(p.Output())
		t.Logf("process %d: %d warnings and errors: %v", i, len(lines), lines)
		require.LessOrEqual(t, len(lines), 3, "log storm in process %d", i)
	}
}

// problemLines returns the messages of the warnings and errors in a
// process's JSON log.
func problemLines(out string) []string {
	var msgs []string
	for line := range strings.Lines(out) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Level == "WARN" || rec.Level == "ERROR" {
			msgs = append(msgs, rec.Msg)
		}
	}
	return msgs
}

func portOf(addr string) string {
	i := strings.LastIndex(addr, ":")
	return addr[i+1:]
}
