// Package consumer is the review worker pool: consumers in a Redis consumer
// group that read the job_review stream, run a Handler for each job, and
// record the outcome in the jobs table.
//
// Delivery is at least once. On success the job is marked reviewed (only if
// it still waits for that attempt's outcome: compare-and-set), then the entry
// is acknowledged; never the other way round. A failed job stays pending and
// is retried once it has been idle for ReclaimIdle, by any consumer; the same
// reclaim finishes the work of consumers that died. After MaxDeliveries the
// entry is copied to the dead-letter stream "<stream>:dead", acknowledged,
// and the job marked failed. A redelivered job that is already reviewed is
// acknowledged without calling the handler again.
//
// Updates and acknowledgements are batched across finished jobs: one UPDATE
// and one XACK per batch.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/metrics"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Job is a job to review, as the handler receives it, and as the exec and
// http handlers send it (JSON).
type Job struct {
	ID         string    `json:"job_id"`
	Site       string    `json:"site"`
	Title      string    `json:"title"`
	Company    string    `json:"company"`
	URL        string    `json:"job_url"`
	Attempt    int       `json:"attempt"`     // publish attempt, from 1
	TaskID     string    `json:"task_id"`     // the stream entry ID
	EnqueuedAt time.Time `json:"enqueued_at"` // when the relay published it
	Delivery   int64     `json:"delivery"`    // deliveries of this entry so far, this one included
}

// Handler reviews one job. An error means the job is retried later (until
// MaxDeliveries); the handler must be idempotent, since delivery is at least
// once. ctx is cancelled after HandlerTimeout, or when the consumer stops.
type Handler interface {
	Handle(ctx context.Context, job Job) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job Job) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job Job) error { return f(ctx, job) }

// Consumer is one member of the consumer group. Create it with New.
type Consumer struct {
	cfg  *Config
	pool *pgxpool.Pool
	rdb  redis.UniversalClient
	log  *slog.Logger
	m    *metrics.Consumer

	slots   chan struct{} // a token per idle handler
	work    chan *delivery
	results chan *result

	mu       sync.Mutex
	inflight map[string]time.Time // entry ID → when it was last delivered or refreshed

	abort     chan struct{}
	abortOnce sync.Once
	trimmedAt atomic.Int64 // unix nanoseconds of the last trim
	trimLog   stream.TrimLog
	// finishCtx bounds the recording of results: cancelled by Abort, or
	// when a stop overruns ShutdownTimeout.
	finishCtx    context.Context
	cancelFinish context.CancelFunc
}

// delivery is an entry handed to a handler.
type delivery struct {
	msg        redis.XMessage
	job        Job
	deliveries int64
	skip       string // if set, acknowledge without calling the handler, for this reason
	dead       string // if set, dead-letter without calling the handler, for this reason
	malformed  bool   // the entry names no job: dead-letter it, nothing to mark
}

type outcome int

const (
	reviewed  outcome = iota // handler succeeded
	retried                  // handler failed; stays pending
	dead                     // dead-letter it
	skipped                  // acknowledge only
	abandoned                // stopped before a result; stays pending
)

type result struct {
	d       *delivery
	outcome outcome
	err     error
}

// New returns a consumer that records outcomes through pool and reads
// with rdb. It does not close them.
func New(pool *pgxpool.Pool, rdb redis.UniversalClient, cfg Config) (*Consumer, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	slots := make(chan struct{}, c.Concurrency)
	for range c.Concurrency {
		slots <- struct{}{}
	}
	finishCtx, cancelFinish := context.WithCancel(context.Background())
	return &Consumer{
		finishCtx:    finishCtx,
		cancelFinish: cancelFinish,
		cfg:          c,
		pool:         pool,
		rdb:          rdb,
		log:          c.Logger.With(slog.String("consumer", c.Name)),
		m:            c.Metrics,
		slots:        slots,
		work:         make(chan *delivery),
		results:      make(chan *result, 2*c.Concurrency),
		inflight:     map[string]time.Time{},
		abort:        make(chan struct{}),
	}, nil
}

// Name is the consumer's name in the group.
func (c *Consumer) Name() string { return c.cfg.Name }

// Abort stops a Run that is shutting down at once: in-flight handlers are
// cancelled and not waited for; their entries stay pending for other
// consumers. For a second interrupt signal.
func (c *Consumer) Abort() {
	c.abortOnce.Do(func() {
		close(c.abort)
		c.cancelFinish()
	})
}

// Run consumes until ctx is done, then stops reading, lets in-flight
// handlers finish for up to ShutdownTimeout and records their outcomes. It
// returns nil once stopped. Redis or PostgreSQL outages are retried with
// backoff. Run is called once per Consumer.
func (c *Consumer) Run(ctx context.Context) error {
	c.log.InfoContext(ctx, "consumer: started", slog.String("stream", c.cfg.Stream),
		slog.String("group", c.cfg.Group), slog.Int("concurrency", c.cfg.Concurrency))
	if !c.ensureGroupRetrying(ctx) {
		return nil
	}

	// Handlers run under workCtx, which outlives ctx by ShutdownTimeout.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	var fetchers, workers, refresher sync.WaitGroup
	fetchers.Go(func() { c.readLoop(ctx) })
	fetchers.Go(func() { c.reclaimLoop(ctx) })
	fetchers.Go(func() { c.housekeepingLoop(ctx) })
	for range c.cfg.Concurrency {
		workers.Go(func() { c.worker(workCtx) })
	}
	refreshCtx, stopRefresh := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRefresh()
	refresher.Go(func() { c.refreshLoop(refreshCtx) })
	completerDone := make(chan struct{})
	go func() {
		defer close(completerDone)
		var wg sync.WaitGroup
		for range recorders {
			wg.Go(c.completeLoop)
		}
		wg.Wait()
	}()

	<-ctx.Done()
	defer c.cancelFinish()
	// Recording results may take until the handlers' deadline and a little
	// more; a database that is down then does not hold the stop forever.
	finishDeadline := time.AfterFunc(c.cfg.ShutdownTimeout+5*time.Second, c.cancelFinish)
	defer finishDeadline.Stop()
	c.log.InfoContext(ctx, "consumer: stopping; waiting for handlers in flight",
		slog.Int("in_flight", c.inFlight()), slog.Duration("shutdown_timeout", c.cfg.ShutdownTimeout))
	fetchers.Wait()
	close(c.work)

	workersDone := make(chan struct{})
	go func() {
		workers.Wait()
		close(workersDone)
	}()
	timeout := time.NewTimer(c.cfg.ShutdownTimeout)
	defer timeout.Stop()
	select {
	case <-workersDone:
	case <-timeout.C:
		c.log.WarnContext(ctx, "consumer: shutdown timeout; cancelling handlers, their jobs stay pending for others")
	case <-c.abort:
		c.log.WarnContext(ctx, "consumer: aborted; cancelling handlers, their jobs stay pending for others")
	}
	cancelWork()
	// Handlers that honour their context return at once; do not wait long
	// for those that don't.
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	select {
	case <-workersDone:
		close(c.results) // the completer records the last results and returns
		<-completerDone
	case <-grace.C:
		c.log.ErrorContext(ctx, "consumer: handlers ignore cancellation; leaving them behind")
	}
	stopRefresh()
	refresher.Wait()
	c.log.InfoContext(ctx, "consumer: stopped")
	return nil
}

// acquire takes between 1 and max idle-handler slots, waiting for the first.
// It returns 0 once ctx is done.
func (c *Consumer) acquire(ctx context.Context, max int) int {
	select {
	case <-ctx.Done():
		return 0
	case <-c.slots:
	}
	return 1 + c.tryAcquire(max-1)
}

// tryAcquire takes up to max slots without waiting.
func (c *Consumer) tryAcquire(max int) int {
	n := 0
	for n < max {
		select {
		case <-c.slots:
			n++
		default:
			return n
		}
	}
	return n
}

func (c *Consumer) release(n int) {
	for range n {
		c.slots <- struct{}{}
	}
}

// dispatch hands a delivery, for which a slot is held, to a handler.
func (c *Consumer) dispatch(d *delivery) {
	c.track(d.msg.ID)
	c.work <- d
}

func (c *Consumer) track(id string) {
	c.mu.Lock()
	c.inflight[id] = time.Now()
	n := len(c.inflight)
	c.mu.Unlock()
	c.m.InFlight.Set(float64(n))
}

func (c *Consumer) untrack(ids ...string) {
	c.mu.Lock()
	for _, id := range ids {
		delete(c.inflight, id)
	}
	n := len(c.inflight)
	c.mu.Unlock()
	c.m.InFlight.Set(float64(n))
}

func (c *Consumer) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// worker runs handlers until the work channel closes.
func (c *Consumer) worker(ctx context.Context) {
	for d := range c.work {
		r := c.handle(ctx, d)
		select {
		case c.results <- r:
		case <-c.abort:
			// Nobody records results any more; the entry stays pending.
		}
		c.release(1)
	}
}

// handle runs the handler for d, unless d is settled already.
func (c *Consumer) handle(ctx context.Context, d *delivery) *result {
	switch {
	case d.skip != "":
		return &result{d: d, outcome: skipped}
	case d.dead != "":
		return &result{d: d, outcome: dead, err: errors.New(d.dead)}
	}
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	defer cancel()
	start := time.Now()
	err := callHandler(hctx, c.cfg.Handler, d.job)
	c.m.HandlerDuration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		return &result{d: d, outcome: reviewed}
	case ctx.Err() != nil:
		// Stopped by shutdown, not by the job: not a failed delivery.
		return &result{d: d, outcome: abandoned, err: err}
	case errors.Is(err, context.DeadlineExceeded) && hctx.Err() != nil:
		err = fmt.Errorf("handler timed out after %s: %w", c.cfg.HandlerTimeout, err)
	}
	if d.deliveries >= int64(c.cfg.MaxDeliveries) {
		return &result{d: d, outcome: dead, err: err}
	}
	return &result{d: d, outcome: retried, err: err}
}

// callHandler turns a panic into an error.
func callHandler(ctx context.Context, h Handler, job Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h.Handle(ctx, job)
}

// newDelivery reads a stream entry into a delivery. An entry that does not
// name a job and attempt cannot be handled or recorded; it is dead-lettered
// as it is.
func newDelivery(msg redis.XMessage, deliveries int64) *delivery {
	d := &delivery{msg: msg, deliveries: deliveries}
	str := func(k string) string { s, _ := msg.Values[k].(string); return s }
	d.job = Job{
		ID:       str(stream.FieldJobID),
		Site:     str(stream.FieldSite),
		Title:    str(stream.FieldTitle),
		Company:  str(stream.FieldCompany),
		URL:      str(stream.FieldJobURL),
		TaskID:   msg.ID,
		Delivery: deliveries,
	}
	attempt, err := strconv.Atoi(str(stream.FieldAttempt))
	if d.job.ID == "" || err != nil || attempt < 1 {
		d.dead, d.malformed = "malformed entry: no job_id or attempt", true
		return d
	}
	d.job.Attempt = attempt
	d.job.EnqueuedAt, _ = time.Parse(time.RFC3339Nano, str(stream.FieldEnqueuedAt))
	return d
}

// retrier retries what, logging when it starts failing and recovers.
func (c *Consumer) retrier(what string) *backoff.Retrier {
	return &backoff.Retrier{Logger: c.log, Level: slog.LevelError,
		Failing: "consumer: " + what + " failed; retrying with backoff", Recovered: "consumer: " + what + " recovered"}
}

// errorText shortens an error for last_error and logs.
func errorText(err error) string {
	const max = 2000
	s := err.Error()
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
