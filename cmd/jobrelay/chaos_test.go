package main

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/sample"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// reviewLog is the review service the consumers call: it records every
// call.
type reviewLog struct {
	mu    sync.Mutex
	calls map[string]int // job ID → handler calls
	total int
}

func (l *reviewLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var job struct {
		ID string `json:"job_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&job); err != nil || job.ID == "" {
		http.Error(w, "bad job", http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	l.calls[job.ID]++
	l.total++
	l.mu.Unlock()
	time.Sleep(time.Duration(5+rand.N(20)) * time.Millisecond) // a review takes a moment
	w.WriteHeader(http.StatusNoContent)
}

func (l *reviewLog) counts() (distinct, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls), l.total
}

// TestChaos runs three relays and two consumers of the real binary while
// jobs arrive in bursts, kills relays and consumers with SIGKILL, and
// restarts Redis empty. Every job must end reviewed, having reached the
// handler at least once.
func TestChaos(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	schema := testenv.NewSchema(t)
	service := &reviewLog{calls: map[string]int{}}
	review := httptest.NewServer(service)
	defer review.Close()

	env := []string{
		"DATABASE_URL=" + schema.URL,
		"REDIS_URL=" + srv.URL(),
		"JOB_REVIEW_QUEUE_NAME=job_review",
		"METRICS_ADDR=",
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
		"POLL_INTERVAL=500ms", // the safety net, and the reaper's tick
		"REENQUEUE_AFTER=2s",  // entries lost with Redis come back soon
		"CYCLE_TIMEOUT=5s",    //
		"RECLAIM_IDLE=1s",     // a killed consumer's jobs are taken over soon
		"HANDLER=http:" + review.URL,
		"CONCURRENCY=16",
		"PATH=/usr/bin:/bin",
	}
	dir := t.TempDir()
	relays := make([]*proc, 3)
	consumers := make([]*proc, 2)
	for i := range relays {
		relays[i] = start(t, dir, env, "relay")
	}
	for i := range consumers {
		consumers[i] = start(t, dir, env, "consume")
	}
	kill := func(p *proc, args ...string) *proc {
		require.NoError(t, p.cmd.Process.Kill()) // SIGKILL
		p.wait(30 * time.Second)
		return start(t, dir, env, args...)
	}

	const bursts, perBurst = 10, 500
	rng := rand.New(rand.NewPCG(42, 42))
	began := time.Now()
	var faults []string
	for burst := range bursts {
		_, err := db.InsertJobs(ctx, schema.Pool, sample.Jobs(rng, perBurst))
		require.NoError(t, err)
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond) // bursts arrive apart
		switch burst {
		case 2:
			relays[0] = kill(relays[0], "relay")
			faults = append(faults, "SIGKILL relay 1")
		case 4:
			consumers[0] = kill(consumers[0], "consume")
			faults = append(faults, "SIGKILL consumer 1")
		case 6:
			srv.Restart()
			faults = append(faults, "Redis restarted empty")
		case 7:
			relays[1] = kill(relays[1], "relay")
			consumers[1] = kill(consumers[1], "consume")
			faults = append(faults, "SIGKILL relay 2 and consumer 2")
		}
	}
	inserted := time.Now()

	const jobs = bursts * perBurst
	reviewed := func() int64 {
		c, err := db.CountByStatus(ctx, schema.Pool)
		require.NoError(t, err)
		return c[db.StatusReviewed]
	}
	require.Eventually(t, func() bool { return reviewed() == jobs }, 3*time.Minute, 20*time.Millisecond,
		"every job reviewed (lost: none)")
	drained := time.Now()

	counts, err := db.CountByStatus(ctx, schema.Pool)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{db.StatusReviewed: jobs, db.StatusPendingReview: 0, db.StatusInReview: 0,
		db.StatusFailed: 0, db.StatusArchived: 0}, counts)
	distinct, total := service.counts()
	require.Equal(t, jobs, distinct, "every job reached the handler")
	t.Logf("chaos: %d jobs in %d bursts; faults: %v", jobs, bursts, faults)
	t.Logf("chaos: lost 0; duplicate handler calls %d (%.2f%%); drained %s after the last insert (%s in all)",
		total-distinct, 100*float64(total-distinct)/float64(jobs),
		drained.Sub(inserted).Round(time.Millisecond), drained.Sub(began).Round(time.Millisecond))
	// Entries since the Redis restart: one per job and attempt, whatever
	// relays were killed between their XADD and their COMMIT.
	entries, err := srv.Client().XRange(ctx, "job_review", "-", "+").Result()
	require.NoError(t, err)
	seen := map[string]bool{}
	dupEntries := 0
	for _, e := range entries {
		k := e.Values["job_id"].(string) + ":" + e.Values["attempt"].(string)
		if seen[k] {
			dupEntries++
		}
		seen[k] = true
	}
	require.Zero(t, dupEntries, "duplicate entries for one job and attempt")
	t.Logf("chaos: %d entries in the stream since the Redis restart, duplicate entries per job and attempt: %d", len(entries), dupEntries)
	var attempts2 int64
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE attempts > 1`).Scan(&attempts2))
	t.Logf("chaos: %s jobs re-enqueued by the reaper after the Redis restart (attempt > 1)", strconv.FormatInt(attempts2, 10))
}
