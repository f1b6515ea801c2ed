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
// batches come back full, and otherwise sleeps until the next notification
// or PollInterval. On the poll tick it also runs the reaper, which sends
// back to pending_review the in_review jobs whose stream entry was lost.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
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

	// Owned by the goroutine running cycles.
	conn      *pgx.Conn     // the cycle connection, with the relay's timeouts
	jobs      []db.Job      // reused claim buffer
	forget    stream.Forget // dedup records of the last committed batch
	paused    bool          // held back by backpressure
	checkedAt time.Time     // last backpressure check
	reapFrom  db.Published  // where the reaper's scan resumes

	listening   atomic.Bool
	listenerPID atomic.Uint32 // backend of the LISTEN connection, for tests

	// hooks lets tests stop the relay at a chosen point.
	hooks struct {
		afterPublish func(ctx context.Context)
		beforeListen func()
	}
}

// New returns a relay that claims jobs through pool's database and
// publishes them with rdb. The relay opens connections of its own (for
// cycles, and for LISTEN) with pool's configuration; it does not close pool
// or rdb.
func New(pool *pgxpool.Pool, rdb redis.UniversalClient, cfg Config) (*Relay, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	connCfg := pool.Config().ConnConfig.Copy()
	// A relay that hangs or vanishes mid-cycle must not keep its row locks:
	// PostgreSQL ends its transaction after CycleTimeout.
	ms := strconv.FormatInt(c.CycleTimeout.Milliseconds(), 10)
	connCfg.RuntimeParams["statement_timeout"] = ms
	connCfg.RuntimeParams["idle_in_transaction_session_timeout"] = ms
	// Name the connections, so pg_stat_activity tells them apart.
	app := connCfg.RuntimeParams["application_name"]
	listenCfg := connCfg.Copy()
	connCfg.RuntimeParams["application_name"] = strings.TrimSpace(app + " relay")
	listenCfg.RuntimeParams["application_name"] = strings.TrimSpace(app + " listener")
	return &Relay{
		cfg:       c,
		pool:      pool,
		rdb:       rdb,
		connCfg:   connCfg,
		listenCfg: listenCfg,
		log:       c.Logger,
		jobs:      make([]db.Job, 0, c.BatchSize),
	}, nil
}

// Ready reports whether the relay can receive wake-ups: its LISTEN
// connection is up, or it polls only.
func (r *Relay) Ready() error {
	if r.cfg.PollOnly || r.listening.Load() {
		return nil
	}
	return errors.New("relay: LISTEN connection is down")
}

// Run relays until ctx is done. A cycle in flight when ctx is done still
// commits or rolls back (within CycleTimeout) before Run returns. Errors
// are retried with backoff and logged when the state changes; Run returns
// nil once stopped.
func (r *Relay) Run(ctx context.Context) error {
	defer r.closeConn()
	wake := make(chan struct{}, 1) // one pending wake-up; more coalesce
	var wg sync.WaitGroup
	defer wg.Wait() // the listener stops with ctx
	if !r.cfg.PollOnly {
		wg.Go(func() { r.listen(ctx, wake) })
	}

	r.log.InfoContext(ctx, "relay: started", slog.String("stream", r.cfg.Stream),
		slog.Int("batch_size", r.cfg.BatchSize), slog.Duration("poll_interval", r.cfg.PollInterval),
		slog.Bool("poll_only", r.cfg.PollOnly))
	defer r.log.InfoContext(ctx, "relay: stopped")

	// The first cycle runs once LISTEN is up (the listener's connection
	// wakes the relay), so no job inserted in between waits for a poll.
	// Polling alone, it runs at once.
	poll := time.NewTimer(jitter(r.cfg.PollInterval))
	defer poll.Stop()
	if r.cfg.PollOnly {
		poll.Reset(0)
	} else if err := r.reap(ctx); err != nil && ctx.Err() == nil {
		r.cfg.Metrics.Errors.WithLabelValues("reap").Inc()
		r.log.ErrorContext(ctx, "relay: reaper failed", slog.String("err", err.Error()))
	}
	var (
		bo       backoff.Backoff
		failing  error
		failedAt time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
			poll.Reset(jitter(r.cfg.PollInterval))
			if err := r.reap(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Metrics.Errors.WithLabelValues("reap").Inc()
				r.log.ErrorContext(ctx, "relay: reaper failed", slog.String("err", err.Error()))
			}
		}
		_, err := r.drain(ctx, false)
		if err == nil || ctx.Err() != nil {
			if failing != nil {
				r.log.InfoContext(ctx, "relay: recovered", slog.Int("failures", bo.Failures()),
					slog.Duration("down_for", time.Since(failedAt)))
				failing = nil
			}
			bo.Reset()
			continue
		}
		if failing == nil {
			failedAt = time.Now()
			r.log.ErrorContext(ctx, "relay: cycle failed; retrying with backoff", slog.String("err", err.Error()))
		} else {
			r.log.DebugContext(ctx, "relay: cycle failed again", slog.String("err", err.Error()))
		}
		failing = err
		if !backoff.Sleep(ctx, bo.Next()) {
			return nil
		}
		signal(wake) // try again
	}
}

// Drain relays until a cycle finds nothing pending and returns how many jobs
// it relayed: `jobrelay relay --once`. It waits out backpressure; it returns
// the first error.
func (r *Relay) Drain(ctx context.Context) (int, error) {
	defer r.closeConn()
	return r.drain(ctx, true)
}

// drain runs cycles while there is work: until a batch comes back short
// (or, with untilEmpty, empty). Full batches are followed at once by the next
// cycle.
func (r *Relay) drain(ctx context.Context, untilEmpty bool) (int, error) {
	total := 0
	for ctx.Err() == nil {
		if err := r.waitForRoom(ctx); err != nil {
			return total, err
		}
		if ctx.Err() != nil {
			break
		}
		n, err := r.cycle(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 || (!untilEmpty && n < r.cfg.BatchSize) {
			break
		}
	}
	return total, nil
}

// cycle claims, publishes and commits one batch, and returns how many jobs
// it claimed. It runs to the end even when ctx is cancelled (shutdown),
// within CycleTimeout.
func (r *Relay) cycle(parent context.Context) (n int, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.cfg.CycleTimeout)
	defer cancel()
	start := time.Now()
	m := r.cfg.Metrics
	defer func() {
		switch {
		case err != nil:
			m.Cycles.WithLabelValues("error").Inc()
		case n == 0:
			m.Cycles.WithLabelValues("empty").Inc()
		default:
			m.Cycles.WithLabelValues("published").Inc()
		}
	}()

	conn, err := r.cycleConn(ctx)
	if err != nil {
		m.Errors.WithLabelValues("claim").Inc()
		return 0, err
	}
	jobs, err := db.BeginClaim(ctx, conn, r.cfg.BatchSize, r.jobs)
	if err != nil {
		m.Errors.WithLabelValues("claim").Inc()
		r.rollback(ctx)
		return 0, err
	}
	r.jobs = jobs
	if len(jobs) == 0 {
		r.rollback(ctx)
		return 0, nil
	}
	r.log.InfoContext(ctx, "Found "+strconv.Itoa(len(jobs))+" jobs pending review", slog.Int("num_jobs", len(jobs)))

	now := time.Now().UTC()
	enqueuedAt := now.Format(time.RFC3339Nano)
	publishable, failedIDs, failedErrs := r.splitOversized(jobs, enqueuedAt)
	p := db.InReviewParams{EnqueuedAt: now, FailedIDs: failedIDs, FailedErrors: failedErrs}
	var published stream.Forget
	if len(publishable) > 0 {
		pub, err := stream.Publish(ctx, r.rdb, &stream.PublishParams{
			Stream:     r.cfg.Stream,
			DedupTTL:   r.cfg.DedupTTL,
			EnqueuedAt: enqueuedAt,
			Jobs:       publishable,
			Forget:     r.forget,
		})
		if err != nil {
			m.Errors.WithLabelValues("publish").Inc()
			r.rollback(ctx)
			return 0, err
		}
		r.forget = stream.Forget{} // applied
		if r.hooks.afterPublish != nil {
			r.hooks.afterPublish(ctx)
		}
		p.IDs = make([]string, len(publishable))
		for i := range publishable {
			p.IDs[i] = publishable[i].ID
		}
		p.StreamIDs = pub.StreamIDs
		published = pub.Forget
	}
	if err := db.CommitInReview(ctx, conn, &p); err != nil {
		m.Errors.WithLabelValues("commit").Inc()
		r.rollback(ctx)
		return 0, err
	}
	// Committed: no claim can publish these (job, attempt) pairs again, so
	// the next Publish deletes their dedup records. Until a COMMIT is known
	// to have succeeded, the records stay.
	r.forget = published

	elapsed := time.Since(start)
	m.JobsRelayed.Add(float64(len(publishable)))
	m.JobsUnpublishable.Add(float64(len(failedIDs)))
	m.CycleDuration.Observe(elapsed.Seconds())
	m.BatchSize.Observe(float64(len(jobs)))
	r.logJobs(ctx, publishable, p.StreamIDs, failedIDs, failedErrs)
	r.log.InfoContext(ctx, "Cycle complete: enqueued "+strconv.Itoa(len(publishable))+" jobs for review",
		slog.Int("num_enqueued", len(publishable)), slog.Int("num_failed", len(failedIDs)),
		slog.Duration("duration", elapsed))
	return len(jobs), nil
}

// splitOversized sets aside the jobs whose entry would exceed MaxEntryBytes.
func (r *Relay) splitOversized(jobs []db.Job, enqueuedAt string) (ok []db.Job, failedIDs, failedErrs []string) {
	for i := range jobs {
		if size := stream.EntrySize(&jobs[i], enqueuedAt); size > r.cfg.MaxEntryBytes {
			if ok == nil {
				ok = append(make([]db.Job, 0, len(jobs)), jobs[:i]...)
			}
			failedIDs = append(failedIDs, jobs[i].ID)
			failedErrs = append(failedErrs, fmt.Sprintf(
				"relay: stream entry would be %d bytes, over the %d-byte limit (MaxEntryBytes); fix the row and retry it", size, r.cfg.MaxEntryBytes))
			continue
		}
		if ok != nil {
			ok = append(ok, jobs[i])
		}
	}
	if ok == nil && failedIDs == nil {
		ok = jobs
	}
	return ok, failedIDs, failedErrs
}

// logJobs logs each enqueued job, as the old poller did: at Info for small
// batches, at Debug for big ones (see JobLogLimit).
func (r *Relay) logJobs(ctx context.Context, jobs []db.Job, ids, failedIDs, failedErrs []string) {
	for i := range failedIDs {
		r.log.ErrorContext(ctx, "relay: job cannot be published; marked failed",
			slog.String("job_id", failedIDs[i]), slog.String("err", failedErrs[i]))
	}
	level := slog.LevelInfo
	if r.cfg.JobLogLimit >= 0 && len(jobs) > r.cfg.JobLogLimit {
		level = slog.LevelDebug
	}
	if !r.log.Enabled(ctx, level) {
		return
	}
	for i := range jobs {
		j := &jobs[i]
		r.log.LogAttrs(ctx, level, "Enqueued job for review",
			slog.String("job_id", j.ID), slog.String("title", j.Title.String),
			slog.String("company", j.Company.String), slog.String("site", j.Site.String),
			slog.String("task_id", ids[i]), slog.Int("attempt", int(j.Attempts)+1))
	}
}

// cycleConn returns the relay's cycle connection, connecting if needed.
func (r *Relay) cycleConn(ctx context.Context) (*pgx.Conn, error) {
	if r.conn != nil && !r.conn.IsClosed() {
		return r.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, r.connCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	r.conn = conn
	return conn, nil
}

// rollback ends a failed cycle's transaction; if that fails too, the
// connection is closed (PostgreSQL then rolls back) and replaced next cycle.
func (r *Relay) rollback(ctx context.Context) {
	if r.conn == nil {
		return
	}
	if err := db.Rollback(ctx, r.conn); err != nil {
		r.log.DebugContext(ctx, "relay: rollback failed; connection closed", slog.String("err", err.Error()))
		r.closeConn()
	}
}

func (r *Relay) closeConn() {
	if r.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = r.conn.Close(ctx)
		r.conn = nil
	}
}

// waitForRoom holds the relay back while the group's lag or Redis memory is
// over its limit: the backlog then waits in PostgreSQL, where it is durable,
// instead of filling Redis. It checks at most every pressureInterval.
func (r *Relay) waitForRoom(ctx context.Context) error {
	if r.cfg.MaxStreamLag == -1 && r.cfg.MaxMemoryRatio == -1 {
		return nil
	}
	for {
		if !r.paused && time.Since(r.checkedAt) < r.cfg.pressureInterval {
			return nil
		}
		r.checkedAt = time.Now()
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CycleTimeout)
		p, err := stream.ReadPressure(cctx, r.rdb, r.cfg.Stream, r.cfg.Group)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.cfg.Metrics.Errors.WithLabelValues("pressure").Inc()
			return fmt.Errorf("check backpressure: %w", err)
		}
		reason := r.overLimit(p)
		if reason == "" {
			if r.paused {
				r.paused = false
				r.cfg.Metrics.Paused.Set(0)
				r.log.InfoContext(ctx, "relay: consumers caught up; resuming", slog.Int64("lag", p.Lag))
			}
			return nil
		}
		if !r.paused {
			r.paused = true
			r.cfg.Metrics.Paused.Set(1)
			r.cfg.Metrics.BackpressurePauses.Inc()
			r.log.WarnContext(ctx, "relay: pausing: "+reason+"; the backlog waits in PostgreSQL",
				slog.Int64("lag", p.Lag), slog.Int64("used_memory", p.UsedMemory), slog.Int64("maxmemory", p.MaxMemory))
		}
		if !backoff.Sleep(ctx, r.cfg.pressureInterval) {
			return nil
		}
	}
}

// overLimit says which limit p passes, or "" if none.
func (r *Relay) overLimit(p stream.Pressure) string {
	if r.cfg.MaxStreamLag >= 0 && p.Lag > r.cfg.MaxStreamLag {
		return fmt.Sprintf("group %s is %d entries behind (MaxStreamLag %d)", r.cfg.Group, p.Lag, r.cfg.MaxStreamLag)
	}
	if r.cfg.MaxMemoryRatio > 0 && p.MaxMemory > 0 && float64(p.UsedMemory) > r.cfg.MaxMemoryRatio*float64(p.MaxMemory) {
		return fmt.Sprintf("Redis uses %d of %d bytes of maxmemory (MaxMemoryRatio %g)", p.UsedMemory, p.MaxMemory, r.cfg.MaxMemoryRatio)
	}
	return ""
}

// signal queues one wake-up; if one is already queued, this one joins it.
func signal(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// jitter spreads d by ±10%, so replicas started together do not poll
// together.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}
