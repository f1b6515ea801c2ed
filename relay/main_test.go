package relay

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/db"
)

// childEnv, when set, makes the test binary a relay process that stops at
// a failpoint, for the parent test to kill: see TestCrashBetweenPublishAndCommit.
const childEnv = "JOBRELAY_TEST_RELAY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(relayChild())
	}
	goleak.VerifyTestMain(m)
}

// relayChild drains the pipeline named by its environment, and at the
// failpoint "after-publish" (the batch is in the stream, the transaction is
// not committed) says so on stdout and waits to be killed.
func relayChild() int {
	ctx := context.Background()
	pool, err := db.Open(ctx, os.Getenv("DATABASE_URL"), 4)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts.ContextTimeoutEnabled = true
	r, err := New(pool, redis.NewClient(opts), Config{Stream: os.Getenv("STREAM"), MaxStreamLag: -1, MaxMemoryRatio: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r.hooks.afterPublish = func(context.Context, *pgx.Conn) {
		fmt.Println("failpoint after-publish reached")
		time.Sleep(time.Hour)
	}
	if _, err := r.Drain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// terminateBackend ends PostgreSQL's backend pid through q, as a crash
// or a cut connection would.
func terminateBackend(ctx context.Context, q db.DBTX, pid uint32) error {
	var ok bool
	if err := q.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil {
		return fmt.Errorf("terminate backend %d: %w", pid, err)
	}
	if !ok {
		return fmt.Errorf("terminate backend %d: no such backend", pid)
	}
	return nil
}

// cyclesRun counts every cycle, whatever its result.
func cyclesRun(t *testing.T, r *Relay) float64 {
	t.Helper()
	total := 0.0
	for _, res := range []string{"published", "empty", "error"} {
		total += counterValue(t, r.m.Cycles.WithLabelValues(res))
	}
	return total
}
