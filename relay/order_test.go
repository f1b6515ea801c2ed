package relay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// These tests run the whole path, relay and consumer group, and look at
// the order in which jobs reach the handler. The handler takes a little
// time per job, so that a backlog of 50,000 jobs takes far longer to review
// than the jobs inserted after it need to overtake it; what decides is the
// number of jobs reviewed when the last of them is, never a sleep of the
// test's.

// insertJobs inserts n pending jobs with one INSERT … SELECT, with the
// priority and tenant given (tenant "" is NULL: the default tenant). Their
// title is their class, as review counts them: "priority 10", "tenant B".
func (b *testBundle) insertJobs(t *testing.T, n, priority int, tenant string) {
	t.Helper()
	b.sql(t, `
INSERT INTO jobs (site, job_url, title, company, priority, tenant)
SELECT 'test', 'https://jobs.example.com/' || i,
       CASE WHEN $3::text = '' THEN 'priority ' || $2::smallint ELSE 'tenant ' || $3::text END,
       'Acme', $2::smallint, NULLIF($3::text, '')
FROM generate_series(1, $1) AS i`, n, priority, tenant)
}

// review is a consumer handler that counts the jobs it handled by class,
// their title (see insertJobs).
type review struct {
	delay time.Duration // per job, so that a backlog takes time

	mu      sync.Mutex
	handled map[string]int // per class
	reached map[string]chan struct{}
	want    map[string]int // when handled[class] reaches want[class], close reached[class]
}

func newReview(delay time.Duration) *review {
	return &review{delay: delay, handled: map[string]int{}, reached: map[string]chan struct{}{}, want: map[string]int{}}
}

// when returns a channel closed once n jobs of class were handled.
func (rv *review) when(class string, n int) <-chan struct{} {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	ch := make(chan struct{})
	rv.reached[class], rv.want[class] = ch, n
	return ch
}

func (rv *review) count(class string) int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.handled[class]
}

func (rv *review) Handle(ctx context.Context, j consumer.Job) error {
	class := *j.Title
	if rv.delay > 0 {
		select {
		case <-time.After(rv.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.handled[class]++
	if ch := rv.reached[class]; ch != nil && rv.handled[class] == rv.want[class] {
		close(ch)
	}
	return nil
}

// startConsumer runs a consumer of the test's stream with handler h, and
// returns the registry of its metrics.
func (b *testBundle) startConsumer(t *testing.T, h consumer.Handler, concurrency int) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := consumer.New(b.schema.Pool, b.rdb, consumer.Config{Stream: b.stream, Handler: h,
		Concurrency: concurrency, Block: 50 * time.Millisecond, Registerer: reg})
	require.NoError(t, err)
	testenv.Start(t, c.Run)
	return reg
}

// counters gathers reg's counters as "name{label=value}" → value.
func counters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var name strings.Builder
			name.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				name.WriteString("{" + l.GetName() + "=" + l.GetValue() + "}")
			}
			out[name.String()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// requireRelayedAllItMay waits until the relay has relayed every pending
// job, or is held back by MaxStreamLag: the stream holds what it may.
func (b *testBundle) requireRelayedAllItMay(t *testing.T, r *Relay) {
	t.Helper()
	require.Eventually(t, func() bool {
		return counterValue(t, r.m.Paused) == 1 || b.countWhere(t, `status = 'pending_review'`) == 0
	}, time.Minute, time.Millisecond)
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(2 * time.Minute):
		t.Fatalf("timed out waiting until %s", what)
	}
}

func TestUrgentJobsOvertakeABacklog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rv := newReview(200 * time.Microsecond)
	flowing := rv.when("priority 0", 1000)
	urgent := rv.when("priority 10", 100)
	// A short stream (MaxStreamLag) is what lets the claim order decide:
	// the jobs claimed wait behind at most that many entries.
	cfg := b.cfg
	cfg.MaxStreamLag = 500
	r := b.newRelay(t, cfg)
	startRelay(t, r)
	b.startConsumer(t, rv, 4)

	// The backlog flows when the urgent jobs arrive, and fills the stream
	// as far as the relay lets it.
	b.insertJobs(t, 50_000, 0, "")
	waitClosed(t, flowing, "the backlog was flowing")
	b.requireRelayedAllItMay(t, r)
	b.insertJobs(t, 100, 10, "")
	waitClosed(t, urgent, "the 100 urgent jobs were handled")
	backlog := rv.count("priority 0")
	t.Logf("urgent jobs handled after %d of the backlog's 50,000", backlog)
	require.LessOrEqual(t, backlog, 25_000, "the urgent jobs waited for half the backlog")
	// And recorded: reviewed in the table while half the backlog is not.
	require.Eventually(t, func() bool { return b.countWhere(t, `priority = 10 AND status = 'reviewed'`) == 100 },
		time.Minute, time.Millisecond)
	require.LessOrEqual(t, b.countWhere(t, `priority = 0 AND status = 'reviewed'`), 25_000)
}

func TestLowPriorityKeepsFlowingUnderHighPriorityLoad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insertJobs(t, 1000, 0, "")
	b.insertJobs(t, 2000, 10, "")
	rv := newReview(0)
	low := rv.when("priority 0", 100)

	cfg := b.cfg
	cfg.MaxStreamLag = 200
	cfg.BatchSize = 50
	startRelay(t, b.newRelay(t, cfg))
	b.startConsumer(t, rv, 4)

	// Constant high-priority load: whenever fewer than 1000 wait, 1000
	// more arrive, so that high-priority jobs never run out while the low
	// ones are watched.
	ctx := testenv.Context(t)
	stop := make(chan struct{})
	fed := make(chan error, 1)
	var starved atomic.Bool
	go func() {
		for {
			select {
			case <-stop:
				fed <- nil
				return
			default:
			}
			var n int
			if err := b.schema.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'pending_review' AND priority = 10`).Scan(&n); err != nil {
				fed <- err
				return
			}
			if n == 0 {
				starved.Store(true) // the load was not constant
			}
			if n < 1000 {
				if _, err := b.schema.Pool.Exec(ctx, `
INSERT INTO jobs (site, job_url, title, company, priority)
SELECT 'test', 'https://jobs.example.com/high', 'priority 10', 'Acme', 10 FROM generate_series(1, 1000)`); err != nil {
					fed <- err
					return
				}
			}
		}
	}()
	waitClosed(t, low, "100 low-priority jobs were reviewed")
	close(stop)
	require.NoError(t, <-fed)
	require.False(t, starved.Load(), "high-priority jobs ran out: the load was not constant")
	require.Positive(t, b.countWhere(t, `status = 'pending_review' AND priority = 10`))
	t.Logf("100 low-priority jobs reviewed along with %d high-priority ones", rv.count("priority 10"))
}

func TestStrictPriorityHoldsLowerLevels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insertJobs(t, 100, 0, "")
	b.insertJobs(t, 3000, 10, "")
	rv := newReview(0)
	high := rv.when("priority 10", 3000)

	cfg := b.cfg
	cfg.PriorityStrict = true
	cfg.MaxStreamLag = 200
	cfg.BatchSize = 50
	// One worker: the order is each claim's. With two, one worker's claim
	// skips the last high batch the other holds, takes low jobs, and may
	// publish them first (seen on a loaded machine: 99 low jobs ahead).
	cfg.Workers = 1
	startRelay(t, b.newRelay(t, cfg))
	b.startConsumer(t, rv, 4)

	waitClosed(t, high, "the high-priority jobs were reviewed")
	// The low jobs were claimed only once no high job was pending, so
	// they entered the stream behind the last high ones: only those read
	// along with the last high ones (ReadCount, Concurrency) can have
	// been handled first.
	require.LessOrEqual(t, rv.count("priority 0"), 8)
	require.Eventually(t, func() bool { return b.countWhere(t, `status = 'reviewed'`) == 3100 }, time.Minute, 5*time.Millisecond)
}

func TestOneTenantsFloodDoesNotDelayAnother(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rv := newReview(200 * time.Microsecond)
	flowing := rv.when("tenant A", 1000)
	tenantB := rv.when("tenant B", 100)
	cfg := b.cfg
	cfg.TenantFair = true
	cfg.MaxStreamLag = 0 // the fair default: MaxStreamLagFairDefault
	r := b.newRelay(t, cfg)
	startRelay(t, r)
	b.startConsumer(t, rv, 4)

	b.insertJobs(t, 50_000, 0, "A")
	waitClosed(t, flowing, "tenant A's jobs were flowing")
	b.requireRelayedAllItMay(t, r)
	b.insertJobs(t, 100, 0, "B")
	waitClosed(t, tenantB, "tenant B's 100 jobs were handled")
	a := rv.count("tenant A")
	t.Logf("tenant B's jobs handled after %d of tenant A's 50,000", a)
	require.LessOrEqual(t, a, 25_000, "tenant B waited for half of tenant A's flood")
	require.Eventually(t, func() bool { return b.countWhere(t, `tenant = 'B' AND status = 'reviewed'`) == 100 },
		time.Minute, time.Millisecond)
	require.LessOrEqual(t, b.countWhere(t, `tenant = 'A' AND status = 'reviewed'`), 25_000)
}

func TestFairClaimsShareByWeightAndTakeTurns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// More tenants than a claim serves: a claim of 30 jobs gives 6 tenants
	// their share of 10 (5 jobs each is all they have), and the next claim
	// starts after the last one served.
	for _, tenant := range []string{"t00", "t01", "t02", "t03", "t04", "t05", "t06", "t07", "t08", "t09",
		"t10", "t11", "t12", "t13", "t14"} {
		b.insertJobs(t, 5, 0, tenant)
	}
	b.insertJobs(t, 5, 0, "")
	ctx := testenv.Context(t)
	conn := b.conn(t)
	claim := func(p *db.ClaimParams) ([]string, db.Claimed) {
		t.Helper()
		jobs, c, err := db.BeginClaimWith(ctx, conn, p, nil)
		require.NoError(t, err)
		require.NoError(t, db.Rollback(ctx, conn))
		return distinct(tenants(jobs)), c
	}
	first, c := claim(&db.ClaimParams{Limit: 30, Fair: &db.FairParams{}})
	require.Equal(t, []string{"t00", "t01", "t02", "t03", "t04", "t05"}, first)
	require.Len(t, c.Tenants, 16, "the tenants found, for the next claims")
	next, _ := claim(&db.ClaimParams{Limit: 30, Fair: &db.FairParams{After: "t12"}})
	require.Equal(t, []string{"t13", "t14", "", "t00", "t01", "t02"}, next)

	// Given the tenants, a claim asks only those; if they have nothing
	// left, it looks for the others.
	some, c := claim(&db.ClaimParams{Limit: 30, Fair: &db.FairParams{Tenants: []string{"t07", "t09"}}})
	require.Equal(t, []string{"t07", "t09"}, some)
	require.Nil(t, c.Tenants)
	others, c := claim(&db.ClaimParams{Limit: 30, Fair: &db.FairParams{Tenants: []string{"gone"}}})
	require.Equal(t, first, others)
	require.Len(t, c.Tenants, 16)

	// Two tenants with 100 jobs each, one of weight 3: a claim of 80
	// gives it 60 and the other 20.
	b.sql(t, `DELETE FROM jobs`)
	b.insertJobs(t, 100, 0, "t00")
	b.insertJobs(t, 100, 0, "t01")
	jobs, c2, err := db.BeginClaimWith(ctx, conn, &db.ClaimParams{Limit: 80,
		Fair: &db.FairParams{Weights: map[string]int{"t01": 3}}}, nil)
	require.NoError(t, err)
	require.NoError(t, db.Rollback(ctx, conn))
	require.True(t, c2.More)
	count := map[string]int{}
	for _, tenant := range tenants(jobs) {
		count[tenant]++
	}
	require.Equal(t, map[string]int{"t00": 20, "t01": 60}, count)
}

func distinct(v []string) []string {
	var out []string
	for _, s := range v {
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

func tenants(jobs []db.Job) []string {
	out := make([]string, len(jobs))
	for i := range jobs {
		out[i] = jobs[i].Tenant.String
	}
	return out
}

func TestTenantJobsInFlightStayUnderTheCap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const maxInFlight = 3
	for _, tenant := range []string{"A", "B", "C"} {
		b.insertJobs(t, 150, 0, tenant)
	}
	b.insertJobs(t, 150, 0, "")
	tenantOf := map[string]string{}
	rows, err := b.schema.Pool.Query(testenv.Context(t), `SELECT id::text, coalesce(tenant, '') FROM jobs`)
	require.NoError(t, err)
	for rows.Next() {
		var id, tenant string
		require.NoError(t, rows.Scan(&id, &tenant))
		tenantOf[id] = tenant
	}
	require.NoError(t, rows.Err())

	var mu sync.Mutex
	running, most := map[string]int{}, map[string]int{}
	done := 0
	all := make(chan struct{})
	handler := consumer.HandlerFunc(func(ctx context.Context, j consumer.Job) error {
		tenant := tenantOf[j.ID]
		if j.Tenant != tenant {
			return fmt.Errorf("job %s: entry says tenant %q, the table %q", j.ID, j.Tenant, tenant)
		}
		mu.Lock()
		running[tenant]++
		most[tenant] = max(most[tenant], running[tenant])
		mu.Unlock()
		// Long enough for the other handlers to start: 16 of them could
		// run one tenant's jobs side by side, but for the cap.
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
		}
		mu.Lock()
		defer mu.Unlock()
		running[tenant]--
		if done++; done == len(tenantOf) {
			close(all)
		}
		return nil
	})

	cfg := b.cfg
	cfg.TenantMaxInFlight = maxInFlight
	cfg.BatchSize = 10
	startRelay(t, b.newRelay(t, cfg))
	reg := b.startConsumer(t, handler, 16)
	waitClosed(t, all, "every job was reviewed")

	mu.Lock()
	defer mu.Unlock()
	t.Logf("most jobs in flight per tenant: %v", most)
	for tenant, n := range most {
		require.LessOrEqual(t, n, maxInFlight, "tenant %q had %d jobs in flight", tenant, n)
	}
	require.Eventually(t, func() bool { return b.countWhere(t, `status = 'reviewed'`) == 600 }, time.Minute, 5*time.Millisecond)

	// The consumer counts them by tenant and priority.
	require.Eventually(t, func() bool {
		c := counters(t, reg)
		return c["jobrelay_consumer_reviewed_by_tenant_total{tenant=A}"] == 150 &&
			c["jobrelay_consumer_reviewed_by_tenant_total{tenant=default}"] == 150 &&
			c["jobrelay_consumer_reviewed_by_priority_total{priority=0}"] == 600
	}, time.Minute, 5*time.Millisecond, "%v", counters(t, reg))
}

// conn is a connection of its own to the test's schema.
func (b *testBundle) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testenv.Context(t), b.schema.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(testenv.Context(t))) })
	return conn
}
