//go:build scale

// The Redis Cluster and Sentinel runs start 15 servers and 15 processes:
// under the other packages' timing-sensitive tests they would load the
// machine those count on. `make test` runs them on their own, after the
// rest (go test -tags scale -run 'TestRedisCluster|TestSentinelFailover').

package main

import (
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/sample"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// TestSentinelFailover runs three relays and two consumers of the binary
// through Sentinel while the primary is killed mid-run and the sentinels
// promote its replica: every job is reviewed, what the old primary took
// with it is re-enqueued by the reaper, and each process logs the
// failover in one line.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	const jobs, bursts = 10_000, 4
	ctx := testenv.Context(t)
	sentinel := testenv.StartSentinel(t)
	schema := testenv.NewSchema(t)
	service := &reviewLog{calls: map[string]int{}}
	review := httptest.NewServer(service)
	defer review.Close()

	env := chaosEnv(schema.URL, sentinel.URL(), review.URL)
	relays, consumers := startChaosPipeline(t, t.TempDir(), env)

	reviewed := func() int64 {
		c, err := db.CountByStatus(ctx, schema.Pool)
		require.NoError(t, err)
		return c[db.StatusReviewed]
	}
	rng := rand.New(rand.NewPCG(5, 5))
	var failedOver time.Time
	for burst := range bursts {
		_, err := db.InsertJobs(ctx, schema.Pool, sample.Jobs(rng, jobs/bursts))
		require.NoError(t, err)
		if burst == 1 {
			require.Eventually(t, func() bool { return reviewed() > jobs/bursts/2 }, time.Minute, 20*time.Millisecond)
			killed := time.Now()
			sentinel.Failover(time.Minute)
			failedOver = time.Now()
			t.Logf("sentinel: the replica was promoted %s after the primary was killed", failedOver.Sub(killed).Round(10*time.Millisecond))
		}
		time.Sleep(200 * time.Millisecond) // bursts arrive apart
	}
	require.Eventually(t, func() bool { return reviewed() == jobs }, 4*time.Minute, 50*time.Millisecond, "every job reviewed")
	done := time.Now()
	requireOnlyReviewed(ctx, t, schema.Pool, jobs)
	distinct, total := service.counts()
	require.Equal(t, jobs, distinct, "every job reached the handler")

	// The new primary has the stream; the old one is gone.
	rdb := redis.NewClient(&redis.Options{Addr: sentinel.Replica.Addr()})
	defer rdb.Close()
	require.NoError(t, rdb.XInfoStream(ctx, "job_review").Err())
	var again int64
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE attempts > 1`).Scan(&again))
	t.Logf("sentinel: %d jobs reviewed %s after the failover; %d re-enqueued by the reaper; %d duplicate handler calls",
		jobs, done.Sub(failedOver).Round(100*time.Millisecond), again, total-distinct)
	// A relay may log both a failed cycle and a failed trim.
	requireNoLogStorm(t, append(relays, consumers...))
}
