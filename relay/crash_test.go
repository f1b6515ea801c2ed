package relay

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// entriesByJob maps job IDs to the IDs of their entries.
func (b *testBundle) entriesByJob(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range b.entries(t) {
		id := m.Values["job_id"].(string)
		out[id] = append(out[id], m.ID)
	}
	return out
}

func TestCrashBetweenPublishAndCommit(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 250)

	// A relay process published its first batch of 100 and is killed
	// before its COMMIT.
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1",
		"DATABASE_URL="+b.schema.URL, "REDIS_URL="+testenv.RedisURL(), "STREAM="+b.stream)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "failpoint after-publish reached", strings.TrimSpace(line))
	require.NoError(t, child.Process.Kill()) // SIGKILL
	_ = child.Wait()

	published := b.entriesByJob(t)
	require.Len(t, published, 100, "the killed relay's batch is in the stream")
	for _, row := range b.rows(t) {
		require.Equal(t, db.StatusPendingReview, row.Status, "the killed relay's transaction rolled back")
	}

	// The next relay claims the same jobs (PostgreSQL released the locks
	// when the connection died) and records the entries already added.
	n, err := b.newRelay(t, b.cfg).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 250, n)
	require.Equal(t, 250, b.requireExactlyOnce(t))
	after := b.entriesByJob(t)
	for job, ids := range published {
		require.Equal(t, ids, after[job], "job %s: its entry from before the crash is kept, no second one", job)
	}
}

func TestConnectionKilledMidCycle(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 150)
	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	require.NoError(t, err)
	defer admin.Close(ctx)

	r := b.newRelay(t, b.cfg)
	var killed atomic.Bool
	r.hooks.afterPublish = func(ctx context.Context, conn *pgx.Conn) {
		if killed.CompareAndSwap(false, true) {
			require.NoError(t, terminateBackend(ctx, admin, conn.PgConn().PID()))
		}
	}
	_, err = r.Drain(ctx)
	require.Error(t, err, "the COMMIT cannot succeed on a terminated connection")
	// The second batch, claimed ahead, is published while the first's
	// UPDATE finds the connection gone.
	require.Len(t, b.entriesByJob(t), 150)
	published := b.entriesByJob(t)

	// The same relay reconnects and finishes, reusing the entries.
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 150, n)
	require.Equal(t, 150, b.requireExactlyOnce(t))
	after := b.entriesByJob(t)
	for job, ids := range published {
		require.Equal(t, ids, after[job], "job %s", job)
	}
	require.Equal(t, float64(1), counterValue(t, r.m.Errors.WithLabelValues("commit")))
}

func TestStalledRedisReleasesRowLocks(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	b := setup(t)
	b.rdb = srv.Client()
	b.seed(t, 10)
	cfg := b.cfg
	cfg.CycleTimeout = 500 * time.Millisecond
	cfg.DedupTTL = time.Minute
	r, err := New(b.schema.Pool, b.rdb, cfg)
	require.NoError(t, err)

	// Redis stops answering for longer than a cycle may last.
	pauser := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer pauser.Close()
	require.NoError(t, pauser.Do(ctx, "CLIENT", "PAUSE", "20000", "ALL").Err())

	start := time.Now()
	_, err = r.Drain(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	elapsed := time.Since(start)
	require.Less(t, elapsed, 10*time.Second, "the cycle must give up after CycleTimeout, not wait for Redis")
	t.Logf("cycle gave up after %v (CycleTimeout %v)", elapsed, cfg.CycleTimeout)

	// The row locks are gone: another transaction can lock every row now,
	// while Redis is still paused.
	tx, err := b.schema.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, `SELECT id FROM jobs FOR UPDATE NOWAIT`)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err(), "rows still locked")
	require.Equal(t, 10, n)
	for _, row := range b.rows(t) {
		require.Equal(t, db.StatusPendingReview, row.Status)
	}
}
