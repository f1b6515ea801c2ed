// Package relay moves jobs that wait for review from PostgreSQL to a Redis
// stream: the outbox relay.
//
// Each cycle is one transaction: claim up to BatchSize pending_review jobs
// with SELECT … FOR UPDATE SKIP LOCKED, publish them to the stream in one
// round trip (idempotently per job and attempt), mark them in_review with
// their entry IDs, COMMIT. Any failure rolls back, so no job is in_review
// without its entry. Relays run side by side safely: SKIP LOCKED gives each
// one rows the others do not hold.
//
// The relay wakes at once on a NOTIFY from the jobs trigger, drains while
// batches come back full (with Workers cycles side by side, each on its own
// connection, so that one commits while another waits for Redis), and
// otherwise sleeps until the next notification or PollInterval. On the
// poll tick it also runs the reaper, which sends back to pending_review the
// in_review jobs whose stream entry was lost, and trims the stream.
//
// Before each claim the relay reserves room under its backpressure limits
// (see pressure.go): a claim takes no more jobs than the room left. A row
// whose data fails the cycle is isolated and failed, never blocking the
// others (see isolate.go).
package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/metrics"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Relay publishes pending jobs to the stream. Create it with New.
type Relay struct {
	cfg       *Config
	pool      *pgxpool.Pool
	rdb       redis.UniversalClient
	connCfg   *pgx.ConnConfig // for the relay's cycle connection
	listenCfg *pgx.ConnConfig // for its LISTEN connection
	log       *slog.Logger
	m         *metrics.Relay

	workers  []*worker                 // Config.Workers of them; workers[0] runs alone when there is no backlog
	reapFrom map[string]db.InReviewJob // where the reaper's scan of each stream resumes; owned by Run
	upgraded bool                      // the stream's old helper keys were moved (see stream.UpgradeKeys); owned by Run

	pressure pressureState // backpressure, shared by the workers (see pressure.go)
	order    claimOrder    // priority and tenants, shared by the workers (see order.go)

	// gate collapses the failure lines of the relay's loops (cycles, the
	// reaper, trimming) into one per minute: a Redis failover is a line.
	gate *backoff.Gate

	// reapRefused holds the lost jobs the database refused to send back
	// to pending_review; the reaper passes over them.
	reapRefused struct {
		sync.Mutex
		ids map[string]bool
	}
	skip struct {
		sync.Mutex
		ids []string // jobs left alone: no update of them succeeds (see isolate.go)
	}

	listening   atomic.Bool
	listenerPID atomic.Uint32 // backend of the LISTEN connection, for tests

	// hooks lets tests stop the relay at a chosen point.
	hooks struct {
		afterPublish func(ctx context.Context, conn *pgx.Conn)
		// beforeClaimAhead runs before a claim ahead, beside the publish.
		beforeClaimAhead func(ctx context.Context, conn *pgx.Conn)
		afterCommit      func()
		beforeListen     func()
	}
}

// New returns a relay that claims jobs through pool's database and
// publishes them with rdb. The relay opens connections of its own (for
// cycles, and for LISTEN) with pool's configuration; it does not close pool
// or rdb. pool's database must have jobrelay's migrations applied (see
// db.NewMigrator).
//
// rdb may be a *redis.Client (one server), a failover client (a primary
// behind Sentinel) or a *redis.ClusterClient: every script declares its
// keys, all in the slot of one stream. It must honour context deadlines:
// created with Options.ContextTimeoutEnabled set (ClusterOptions' and
// FailoverOptions' likewise), or New fails, because the relay bounds each cycle's Redis calls by CycleTimeout
// while it holds row locks. New registers the relay's metrics on
// cfg.Registerer, if set.
func New(pool *pgxpool.Pool, rdb redis.UniversalClient, cfg Config) (*Relay, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	if err := stream.CheckClient(rdb); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	m, err := metrics.NewRelay(c.Registerer)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	connCfg := pool.Config().ConnConfig.Copy()
	// A relay that hangs or vanishes mid-cycle must not keep its row locks:
	// each cycle's transaction sets its own statement and idle timeouts to
	// CycleTimeout (see db.ClaimParams), not the session, so that they hold
	// behind a transaction pooler too.
	listenCfg := connCfg.Copy()
	if c.ListenDatabaseURL != "" {
		if listenCfg, err = pgx.ParseConfig(c.ListenDatabaseURL); err != nil {
			return nil, fmt.Errorf("relay config: %w", configErrorf("ListenDatabaseURL", "is not a valid PostgreSQL URL"))
		}
	}
	// Name the connections, so pg_stat_activity tells them apart.
	app := connCfg.RuntimeParams["application_name"]
	connCfg.RuntimeParams["application_name"] = strings.TrimSpace(app + " relay")
	listenCfg.RuntimeParams["application_name"] = strings.TrimSpace(cmp.Or(listenCfg.RuntimeParams["application_name"], app) + " listener")
	r := &Relay{
		cfg:       c,
		pool:      pool,
		rdb:       rdb,
		connCfg:   connCfg,
		listenCfg: listenCfg,
		log:       c.Logger,
		m:         m,
		gate:      &backoff.Gate{Window: time.Minute},
	}
	r.pressure.trimLog.Gate = r.gate
	for range c.Workers {
		r.workers = append(r.workers, &worker{r: r, jobs: make([]db.Job, 0, c.BatchSize)})
	}
	return r, nil
}

// Ready reports whether the relay can do its work: it can receive
// wake-ups (its LISTEN connection is up, or it polls only), and it is not
// stalled, paused by backpressure for a while with no sign that it will
// resume (no group read anything, no memory was freed, nothing could be
// trimmed: consumers stopped, another group stalled, or Redis is full of
// other data).
func (r *Relay) Ready() error {
	if !r.cfg.PollOnly && !r.listening.Load() {
		return errors.New("relay: LISTEN connection is down")
	}
	return r.stalled()
}

// Run relays until ctx is done. A cycle in flight when ctx is done still
// commits or rolls back (within CycleTimeout) before Run returns. Errors
// are retried with backoff and logged when the state changes; Run returns
// nil once stopped.
func (r *Relay) Run(ctx context.Context) error {
	defer r.closeConns()
	wake := make(chan struct{}, 1) // one pending wake-up; more coalesce
	var wg sync.WaitGroup
	defer wg.Wait() // the listener stops with ctx
	if !r.cfg.PollOnly {
		wg.Go(func() { r.listen(ctx, wake) })
	}
	wg.Go(func() { r.healthLoop(ctx) })
	if r.cfg.ArchiveAfter > 0 {
		wg.Go(func() { r.archiveLoop(ctx) })
	}

	r.log.InfoContext(ctx, "relay: started", slog.String("stream", r.cfg.Stream), slog.Int("partitions", r.cfg.Partitions),
		slog.Int("batch_size", r.cfg.BatchSize), slog.Duration("poll_interval", r.cfg.PollInterval),
		slog.Bool("poll_only", r.cfg.PollOnly))
	defer r.log.InfoContext(ctx, "relay: stopped")
	r.logPublishPath(ctx)

	// The first cycle runs once LISTEN is up (the listener's connection
	// wakes the relay), so no job inserted in between waits for a poll.
	// Polling alone, it runs at once.
	poll := time.NewTimer(backoff.Jitter(r.cfg.PollInterval))
	defer poll.Stop()
	if r.cfg.PollOnly {
		poll.Reset(0)
	} else if err := r.reap(ctx); err != nil && ctx.Err() == nil {
		r.m.Errors.WithLabelValues("reap").Inc()
		r.log.Log(ctx, r.gate.Level(slog.LevelError), "relay: reaper failed", slog.String("err", err.Error()))
	}
	retry := backoff.Retrier{Logger: r.log, Level: slog.LevelError, Gate: r.gate,
		Failing: "relay: cycle failed; retrying with backoff", Recovered: "relay: recovered"}
	// held wakes the relay while jobs wait for their tenant's jobs in
	// flight (TenantMaxInFlight): reviews send no notification.
	var held <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-held:
		case <-poll.C:
			poll.Reset(backoff.Jitter(r.cfg.PollInterval))
			if err := r.reap(ctx); err != nil && ctx.Err() == nil {
				r.m.Errors.WithLabelValues("reap").Inc()
				r.log.Log(ctx, r.gate.Level(slog.LevelError), "relay: reaper failed", slog.String("err", err.Error()))
			}
			r.trim(ctx)
		}
		_, err := r.drain(ctx, untilShort)
		held = nil
		if r.order.held.Swap(false) {
			held = time.After(r.cfg.pressureInterval)
		}
		if err == nil || ctx.Err() != nil {
			retry.OK(ctx)
			continue
		}
		if !retry.Failed(ctx, err) {
			return nil
		}
		signal(wake) // try again
	}
}

// Drain relays until a cycle finds nothing pending and returns how many jobs
// it claimed (relayed, or failed as DrainReport lists them): `jobrelay
// relay --once`. It waits out backpressure; it returns the first error.
func (r *Relay) Drain(ctx context.Context) (int, error) {
	res, err := r.DrainReport(ctx)
	return res.Jobs, err
}

// DrainResult is what Drain did.
type DrainResult struct {
	// Jobs is the number of jobs claimed: relayed, or listed below.
	Jobs int
	// Failed lists the jobs marked failed instead of relayed: their entry
	// would be too large, or the database refused to mark them in_review
	// (last_error says why).
	Failed []string
	// LeftAlone lists the jobs the database would not even let the relay
	// mark failed: they stay pending_review, and the relay passes over
	// them from then on.
	LeftAlone []string
}

func (d *DrainResult) add(c cycleResult) {
	d.Jobs += c.claimed
	d.Failed = append(d.Failed, c.failed...)
	d.LeftAlone = append(d.LeftAlone, c.leftAlone...)
}

func (d *DrainResult) merge(o DrainResult) {
	d.Jobs += o.Jobs
	d.Failed = append(d.Failed, o.Failed...)
	d.LeftAlone = append(d.LeftAlone, o.LeftAlone...)
}

// DrainReport is Drain, saying which jobs it could not relay.
func (r *Relay) DrainReport(ctx context.Context) (DrainResult, error) {
	defer r.closeConns()
	var total DrainResult
	for {
		res, err := r.drain(ctx, untilEmpty)
		total.merge(res)
		// Jobs that wait for their tenant's jobs in flight
		// (TenantMaxInFlight) are still to relay: wait for reviews.
		if err != nil || !r.order.held.Swap(false) || !backoff.Sleep(ctx, r.cfg.pressureInterval) {
			return total, err
		}
	}
}

func (r *Relay) closeConns() {
	for _, w := range r.workers {
		w.closeConn()
	}
}

// drain runs cycles while there is work, until mode says to stop. Full
// batches are followed at once by the next cycle. A single worker runs the first cycle; if its batch was full
// there is a backlog, and every worker drains it side by side, so that one
// worker commits in PostgreSQL while another publishes to Redis.
func (r *Relay) drain(ctx context.Context, mode drainMode) (DrainResult, error) {
	var total DrainResult
	c, more, err := r.workers[0].step(ctx, mode)
	total.add(c)
	if err != nil || !more {
		return total, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, w := range r.workers {
		wg.Go(func() {
			res, err := w.drain(ctx, mode)
			mu.Lock()
			defer mu.Unlock()
			total.merge(res)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	// The extra workers go idle until the next backlog: delete their last
	// records now. The first worker's go with its next publish.
	for _, w := range r.workers[1:] {
		w.forgetCommitted(context.WithoutCancel(ctx))
	}
	return total, firstErr
}

// signal queues one wake-up; if one is already queued, this one joins it.
func signal(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// healthLoop keeps the stalled gauge and this relay's health report in
// Redis up to date until ctx is done, then clears the report: a relay
// paused without progress is seen by `jobrelay status --check`, which
// runs in another process.
func (r *Relay) healthLoop(ctx context.Context) {
	host, _ := os.Hostname()
	rep := &stream.HealthReporter{Client: r.rdb, Stream: r.cfg.Stream,
		Component: fmt.Sprintf("relay %s-%d", host, os.Getpid())}
	ticker := time.NewTicker(min(r.cfg.stalledAfter, stream.HealthRefresh/2))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := rep.Close(ctx); err != nil {
				r.log.WarnContext(ctx, "relay: clearing its health report failed; readers ignore it once stale",
					slog.String("err", err.Error()))
			}
			return
		case <-ticker.C:
		}
		var problem string
		var since time.Time
		if err := r.stalled(); err != nil {
			r.m.Stalled.Set(1)
			// A Redis held at its maxmemory refuses the report, and would
			// be pushed further by it: status --check reads Redis memory
			// itself.
			if p := r.pressure.pause.Load(); p != nil && !p.memory {
				problem, since = err.Error(), p.since
			}
		} else {
			r.m.Stalled.Set(0)
		}
		if err := rep.Update(ctx, problem, since); err != nil && ctx.Err() == nil {
			r.log.DebugContext(ctx, "relay: reporting its health failed", slog.String("err", err.Error()))
		}
	}
}
