package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/sample"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// reviewLog is the review service the consumers call: it records every
// call.
type reviewLog struct {
	mu      sync.Mutex
	calls   map[string]int // job ID → handler calls
	total   int
	down    atomic.Bool // answer 503 to every call, as a service in an outage
	refused atomic.Int64
}

func (l *reviewLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.down.Load() {
		l.refused.Add(1)
		http.Error(w, "review service unavailable", http.StatusServiceUnavailable)
		return
	}
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
// jobs arrive in bursts, in two rounds side by side: one kills relays and
// consumers and restarts Redis empty, the other mixes in bad data and a
// review service outage.
func TestChaos(t *testing.T) {
	t.Parallel()
	t.Run("kills", chaosKills)
	t.Run("bad data and outage", chaosBadData)
}

// chaosKills kills relays and consumers with SIGKILL and restarts Redis
// empty. Every job must end reviewed, having reached the handler at least
// once.
func chaosKills(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	schema := testenv.NewSchema(t)
	service := &reviewLog{calls: map[string]int{}}
	review := httptest.NewServer(service)
	defer review.Close()

	dir := t.TempDir()
	env := chaosEnv(schema.URL, srv.URL(), review.URL)
	relays, consumers := startChaosPipeline(t, dir, env)
	kill := func(p *proc, args ...string) *proc {
		require.NoError(t, p.Cmd.Process.Kill()) // SIGKILL
		p.Wait(30 * time.Second)
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

	requireOnlyReviewed(ctx, t, schema.Pool, jobs)
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

// Titles of the rows that the bad-data round makes fail: a trigger the
// application added rejects the first one's update to in_review (so the
// relay cannot relay it) and the second one's update to reviewed (so the
// consumer cannot record it).
const (
	chaosUnrelayable  = "chaos: this row refuses in_review"
	chaosUnrecordable = "chaos: this row refuses reviewed"
)

// chaosBadData runs the pipeline through malformed stream entries, a row
// the relay cannot update, a row the consumer cannot update, a review
// service that is down for several seconds, and a consumer killed while
// the service is down. Every good job must end reviewed, the two bad rows
// failed with the database's reason (or, for the row the relay could not
// update, reviewed if its stray entry reached a handler first), the malformed entries dead-lettered,
// and no good job dead-lettered because of the outage.
func chaosBadData(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	rdb := srv.Client()
	schema := testenv.NewSchema(t)
	_, err := schema.Pool.Exec(ctx, `
CREATE FUNCTION chaos_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'in_review' AND NEW.title = '`+chaosUnrelayable+`' THEN
        RAISE EXCEPTION 'chaos: job % may not be in review', NEW.id;
    END IF;
    IF NEW.status = 'reviewed' AND NEW.title = '`+chaosUnrecordable+`' THEN
        RAISE EXCEPTION 'chaos: job % may not be reviewed', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chaos_reject BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION chaos_reject();`)
	require.NoError(t, err)
	service := &reviewLog{calls: map[string]int{}}
	review := httptest.NewServer(service)
	defer review.Close()

	env := chaosEnv(schema.URL, srv.URL(), review.URL)
	dir := t.TempDir()
	_, consumers := startChaosPipeline(t, dir, env)

	poison := [][]any{
		{"job_id", "not-a-uuid", "attempt", "1"},
		{"title", "an entry that names no job"},
		{"job_id", "00000000-0000-0000-0000-00000000000x", "attempt", "1"},
		{"job_id", "6f1c1a52-7d1e-4c55-a3c4-0c2f0a1f5b11", "attempt", "99999999999999"},
	}
	const bursts, perBurst = 10, 300
	rng := rand.New(rand.NewPCG(7, 7))
	var faults []string
	var outage time.Duration
	var outageStart time.Time
	for burst := range bursts {
		jobs := sample.Jobs(rng, perBurst)
		switch burst {
		case 1:
			jobs[17].Title = chaosUnrelayable
			faults = append(faults, "a row the relay cannot update")
		case 2:
			for _, values := range poison {
				require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: "job_review", Values: values}).Err())
			}
			faults = append(faults, strconv.Itoa(len(poison))+" malformed entries")
		case 3:
			jobs[42].Title = chaosUnrecordable
			faults = append(faults, "a row the consumer cannot update")
		case 4:
			service.down.Store(true)
			outageStart = time.Now()
		case 6:
			require.NoError(t, consumers[0].Cmd.Process.Kill())
			consumers[0].Wait(30 * time.Second)
			consumers[0] = start(t, dir, env, "consume")
			faults = append(faults, "SIGKILL consumer 1 during the outage")
		}
		_, err := db.InsertJobs(ctx, schema.Pool, jobs)
		require.NoError(t, err)
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond) // bursts arrive apart
	}
	// Keep the service down for well over MAX_DELIVERIES × RECLAIM_IDLE.
	require.Eventually(t, func() bool { return time.Since(outageStart) > 8*time.Second }, time.Minute, 50*time.Millisecond)
	require.NotZero(t, service.refused.Load(), "the outage was seen by the consumers")
	service.down.Store(false)
	outage = time.Since(outageStart)
	faults = append(faults, "review service down (503) for "+outage.Round(100*time.Millisecond).String())
	restored := time.Now()

	// The row the relay cannot update is failed by the relay; but its
	// entry, published before the UPDATE failed, may reach a handler
	// before the relay deletes it, and a handler's success wins: then it
	// ends reviewed.
	var unrelayableID, unrecordableID string
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT id::text FROM jobs WHERE title = $1`, chaosUnrelayable).Scan(&unrelayableID))
	require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT id::text FROM jobs WHERE title = $1`, chaosUnrecordable).Scan(&unrecordableID))
	const jobs = bursts * perBurst
	var last map[string]int64
	if !assert.Eventually(t, //nolint:forbidigo // on failure, the state below says why
		func() bool {
			c, err := db.CountByStatus(ctx, schema.Pool)
			require.NoError(t, err)
			last = c
			return c[db.StatusReviewed]+c[db.StatusFailed] == jobs && c[db.StatusFailed] >= 1
		}, 3*time.Minute, 50*time.Millisecond, "every job reviewed or failed") {
		groups, _ := rdb.XInfoGroups(context.Background(), "job_review").Result()
		pending, _ := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: "job_review",
			Group: "job_review_workers", Start: "-", End: "+", Count: 10}).Result()
		t.Fatalf("stuck: jobs %v; groups %+v; pending %+v", last, groups, pending)
	}
	drained := time.Since(restored)

	status := func(id string) (st, lastErr string) {
		require.NoError(t, schema.Pool.QueryRow(ctx, `SELECT status, coalesce(last_error, '') FROM jobs WHERE id = $1`, id).Scan(&st, &lastErr))
		return st, lastErr
	}
	st, lastErr := status(unrecordableID)
	require.Equal(t, db.StatusFailed, st, "the row the consumer cannot update")
	require.Contains(t, lastErr, "may not be reviewed")
	st, lastErr = status(unrelayableID)
	service.mu.Lock()
	unrelayableHandled := service.calls[unrelayableID] > 0
	service.mu.Unlock()
	if st == db.StatusReviewed {
		require.True(t, unrelayableHandled, "reviewed without a handler call")
		faults = append(faults, "(the unrelayable row's stray entry reached a handler first: reviewed)")
	} else {
		require.Equal(t, db.StatusFailed, st, "the row the relay cannot update")
		require.Contains(t, lastErr, "may not be in review")
	}
	require.EqualValues(t, jobs-2, last[db.StatusReviewed]-map[bool]int64{true: 1}[st == db.StatusReviewed],
		"every good job reviewed")

	// Dead letters: the malformed entries and at most the row whose outcome
	// could not be recorded; no job of the outage.
	require.Eventually(t, func() bool {
		n, err := rdb.XLen(ctx, "{job_review}:dead").Result()
		require.NoError(t, err)
		return n >= int64(len(poison))
	}, time.Minute, 50*time.Millisecond)
	dead, err := rdb.XRange(ctx, "{job_review}:dead", "-", "+").Result()
	require.NoError(t, err)
	malformed := 0
	for _, e := range dead {
		id, _ := e.Values["job_id"].(string)
		switch {
		case id == unrecordableID:
		case id == "" || id == "not-a-uuid" || strings.HasSuffix(id, "x") || e.Values["attempt"] == "99999999999999":
			malformed++
		default:
			t.Errorf("job %s was dead-lettered: %v", id, e.Values)
		}
	}
	require.Equal(t, len(poison), malformed, "every malformed entry dead-lettered once")

	// Nothing is left waiting: the group has no pending entries and the
	// consumers keep up.
	require.Eventually(t, func() bool {
		groups, err := rdb.XInfoGroups(ctx, "job_review").Result()
		require.NoError(t, err)
		return len(groups) == 1 && groups[0].Pending == 0 && groups[0].Lag == 0
	}, time.Minute, 50*time.Millisecond, "no entry left pending")
	distinct, total := service.counts()
	want := jobs - 1 // every good job, and the one that cannot be recorded
	if unrelayableHandled {
		want++
	}
	require.Equal(t, want, distinct, "every good job reached the handler")
	t.Logf("chaos (bad data): %d jobs in %d bursts; faults: %v", bursts*perBurst, bursts, faults)
	t.Logf("chaos (bad data): %d calls refused during the outage; drained %s after the service came back; duplicate handler calls %d",
		service.refused.Load(), drained.Round(time.Millisecond), total-distinct)
}

// chaosEnv is the environment of the chaos rounds' processes: short
// intervals, so that faults are recovered from within seconds.
func chaosEnv(databaseURL, redisURL, reviewURL string) []string {
	return []string{
		"DATABASE_URL=" + databaseURL,
		"REDIS_URL=" + redisURL,
		"JOB_REVIEW_QUEUE_NAME=job_review",
		"METRICS_ADDR=",
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
		"POLL_INTERVAL=500ms", // the safety net, and the reaper's tick
		"REENQUEUE_AFTER=2s",  // entries lost with Redis come back soon
		"CYCLE_TIMEOUT=5s",
		"RECLAIM_IDLE=1s", // a killed consumer's jobs are taken over soon; an outage spans several
		"HANDLER=http:" + reviewURL,
		"CONCURRENCY=16",
		"PATH=/usr/bin:/bin",
	}
}

// startChaosPipeline starts three relays and two consumers of the binary.
func startChaosPipeline(t *testing.T, dir string, env []string) (relays, consumers []*proc) {
	t.Helper()
	relays, consumers = make([]*proc, 3), make([]*proc, 2)
	for i := range relays {
		relays[i] = start(t, dir, env, "relay")
	}
	for i := range consumers {
		consumers[i] = start(t, dir, env, "consume")
	}
	return relays, consumers
}
