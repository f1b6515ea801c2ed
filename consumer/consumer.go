// Package consumer is the review worker pool: consumers in a Redis consumer
// group that read the job_review stream, run a Handler for each job, and
// record the outcome in the jobs table.
//
// Delivery is at least once. On success the job is marked reviewed (only if
// it still waits for that attempt's outcome: compare-and-set), then the entry
// is acknowledged; never the other way round. A redelivered job that is
// already reviewed is acknowledged without calling the handler again.
//
// # Retries and dead letters
//
// A failed job stays pending and is retried, by any consumer, with backoff:
// after its n-th failure an entry waits ReclaimIdle × 2^(n-1), ±10%, capped
// at RetryBackoffMax (with the defaults: 1, 2, 4, 8 minutes…, at most 30).
// ReclaimIdle is the floor, not the schedule. An entry whose consumer died
// or stopped mid-handler has no failure noted, and is taken over as soon as
// it has been idle for ReclaimIdle. Once the deliveries that count reach
// MaxDeliveries, the entry is copied to the dead-letter stream
// "{<stream>}:dead", acknowledged, and the job marked failed.
//
// What the handler says about the job counts: an error of a Go handler, a
// non-zero exit status of an exec command, an HTTP status such as 400, 422
// or 500, a redirect (never followed: it could turn the POST into a GET). A
// transient failure says nothing about the job (see TransientError and
// IsTransient): the review service refused or reset the connection, was
// not found, timed out (HandlerTimeout included), answered 408, 429, 502,
// 503 or 504, or an exec command exited 75. It counts slowly or not at all:
//
//   - While the service answers for other jobs, one transient failure in
//     three counts, and the entry backs off as above: a job whose review
//     always times out is still dead-lettered, after three times the
//     deliveries.
//   - Once five different jobs have failed transiently in a row, the
//     service is taken for down: the consumer's circuit breaker opens (one
//     Warn line; the metric jobrelay_consumer_circuit_open is 1). The
//     consumer then fetches no new work but one probe delivery at a time,
//     after a backoff growing from ReclaimIdle/16 to ReclaimIdle. Failures
//     meanwhile do not count, and failed jobs wait only ReclaimIdle for
//     their turn. The first answer of the service closes the breaker (one
//     Info line) and work resumes at full speed.
//
// So with the defaults (MaxDeliveries 5, ReclaimIdle 1 minute,
// HandlerTimeout 5 minutes) a review service down for 10 minutes, or much
// longer, dead-letters no job, and every job is reviewed once it is back.
//
// A failed delivery is noted in the hash "{<stream>}:retry:<group>" (when it
// is due, the failures so far); a failure that does not count is taken
// back from the entry's delivery counter (XCLAIM … RETRYCOUNT), so that
// XPENDING, Job.Delivery and the dead letter's deliveries show the
// deliveries that count.
//
// Updates and acknowledgements are batched across finished jobs: one UPDATE
// and one XACK per batch.
//
// # Prefetch
//
// A consumer fetches entries for its idle handlers and, while handlers are
// fast, for those the busy handlers will start within 5 ms (judged by a
// moving average of how long a handler holds its slot), at most 100 more:
// one XREADGROUP then feeds many fast handler calls. Handlers that take
// 100 ms or more get no prefetch, so entries a consumer cannot start soon
// stay in the stream for other consumers. Prefetched entries wait in
// flight; any that wait a second for a handler (the handlers turned slow
// since) are handed back to the group with their idle time set to
// ReclaimIdle, so the next reclaim pass of any consumer takes them over.
//
// Nothing a stream entry holds can wedge the consumer. An entry that names
// no job (its job_id is not a UUID, its attempt not a number from 1) is
// dead-lettered as malformed before any handler sees it. When the database
// refuses a batch of outcomes because of one row (a constraint or trigger
// the application added, say), the batch is split to isolate that row, the
// others are recorded, and the job is failed and dead-lettered with the
// database's error; if even that is refused, its entry is dead-lettered and
// acknowledged, and its row left as it is. Servers that are down are
// retried, and a consumer that cannot record its results for 30 seconds
// says so: Ready, the jobrelay_consumer_recorder_stalled gauge, and a health
// report in Redis for `jobrelay status --check`.
//
// A handler's success is never lost: the job is marked reviewed even if its
// entry was reclaimed and dead-lettered by another consumer meanwhile (the
// success then removes the dead letter), or the job was published again
// since; only an archived job stays archived.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/metrics"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Job is a job to review, as the handler receives it, and as the exec and
// http handlers send it (JSON).
type Job struct {
	ID string `json:"job_id"`
	// Site, Title, Company and URL are the job's columns. A NULL column is
	// nil here, absent from the stream entry and null in the JSON; an
	// empty one is "" everywhere.
	Site       *string   `json:"site"`
	Title      *string   `json:"title"`
	Company    *string   `json:"company"`
	URL        *string   `json:"job_url"`
	Attempt    int       `json:"attempt"`            // publish attempt, from 1
	TaskID     string    `json:"task_id"`            // the stream entry ID
	EnqueuedAt time.Time `json:"enqueued_at"`        // when the relay published it
	Delivery   int64     `json:"delivery"`           // deliveries of this entry that count so far, this one included
	Priority   int       `json:"priority,omitempty"` // the job's priority; higher was claimed sooner
	Tenant     string    `json:"tenant,omitempty"`   // the job's tenant, "" for the default tenant
}

// Handler reviews one job. An error means the job is retried later (until
// MaxDeliveries); the handler must be idempotent, since delivery is at least
// once. An error that is about the review service rather than the job (it
// is down, overloaded) should be marked with Transient, so that it does not
// count as fast (see the package doc). ctx is cancelled after
// HandlerTimeout, or when the consumer stops.
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
	// Label values of the reviewed counts by priority and tenant, bounded.
	priorityLabels, tenantLabels *metrics.BoundedLabels

	slots   chan struct{} // a token per idle handler
	work    chan *delivery
	results chan *result

	mu       sync.Mutex
	inflight map[string]time.Time // entry ID → when it was last delivered or refreshed

	brk breaker // holds fetching back while the review service looks down

	// slotHold is the moving average of how long a handler holds its slot,
	// in nanoseconds, 0 before the first; it sizes the prefetch.
	slotHold atomic.Int64

	abort     chan struct{}
	abortOnce sync.Once
	trimmedAt atomic.Int64 // unix nanoseconds of the last trim
	// verifyBefore is the entry time (Unix ms) before which a new entry's
	// job status is checked before its first delivery (see
	// verifyEntriesBefore).
	verifyBefore atomic.Int64
	trimLog      stream.TrimLog
	// gate collapses the failure lines of every loop of every lane into
	// one per minute, so that a Redis outage or failover is a line, not a
	// storm.
	gate *backoff.Gate
	// finishCtx bounds the recording of results: cancelled by Abort, or
	// when a stop overruns ShutdownTimeout.
	finishCtx    context.Context //nolint:containedctx // outlives Run's ctx on purpose: results finish recording after a stop
	cancelFinish context.CancelFunc

	// collecting is held by the recorder collecting a batch (see
	// completeLoop).
	collecting sync.Mutex

	// What each recorder is at, for Ready.
	recMu sync.Mutex
	recs  [recorders]recording
	// stallAfter is how long a recorder may be at one batch before it is
	// reported stalled; healthEvery how often the gauge and the health
	// report are brought up to date. Tests shorten them.
	stallAfter  time.Duration
	healthEvery time.Duration

	// base is the pipeline's stream (Config.Stream): a consumer of
	// partitions is one Consumer per partition, the first of which (the
	// root) runs the others, its lanes, sharing its slots and metrics.
	// Health is reported for the pipeline, on base, by the root.
	base      string
	baseCfg   *Config // the root's: the configuration lanes are made from
	laneMu    sync.Mutex
	lanes     []*Consumer
	laneNames map[string]bool // streams with a Consumer: the root's and its lanes'
}

// Defaults of Consumer.stallAfter and healthEvery.
const (
	stallAfterDefault  = 30 * time.Second
	healthEveryDefault = 2 * time.Second
)

// recording is a recorder's batch in hand.
type recording struct {
	since   time.Time // when the batch was taken up; zero when idle
	results int
	err     string // the latest error recording it, if any
}

// delivery is an entry handed to a handler.
type delivery struct {
	msg        redis.XMessage
	job        Job
	deliveries int64
	settled    settlement // how the entry is settled without a handler, if it is
	reason     string     // why it is settled so: for the log, or the dead letter's error
	malformed  bool       // the entry names no job: dead-letter it, nothing to mark

	// retry is what earlier failed deliveries of the entry noted, if any.
	retry stream.RetryRecord
}

// settlement says whether an entry is settled before any handler sees it,
// and how.
type settlement int

const (
	notSettled        settlement = iota // the handler decides
	settledAck                          // the job needs no handling: acknowledge the entry only
	settledDeadLetter                   // dead-letter the entry without calling the handler
)

// settle settles d as s, for reason.
func (d *delivery) settle(s settlement, reason string) { d.settled, d.reason = s, reason }

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
// with rdb. It does not close them. pool's database must have jobrelay's
// migrations applied (see db.NewMigrator).
//
// rdb may be a *redis.Client (one server), a failover client (a primary
// behind Sentinel) or a *redis.ClusterClient: every script declares its
// keys, all in the slot of one stream. It must honour context deadlines:
// created with Options.ContextTimeoutEnabled set (ClusterOptions' and
// FailoverOptions' likewise), or New fails, because the consumer bounds its Redis calls, and its shutdown by
// ShutdownTimeout, with contexts. New registers the consumer's metrics on
// cfg.Registerer, if set.
func New(pool *pgxpool.Pool, rdb redis.UniversalClient, cfg Config) (*Consumer, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	if err := stream.CheckClient(rdb); err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	m, err := metrics.NewConsumer(c.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	slots := make(chan struct{}, c.Concurrency)
	for range c.Concurrency {
		slots <- struct{}{}
	}
	parts := stream.Partitions(c.Stream, c.Partitions)
	root := newLane(pool, rdb, c, parts[0], m, slots, &backoff.Gate{Window: time.Minute})
	root.baseCfg, root.laneNames = c, map[string]bool{parts[0]: true}
	root.priorityLabels = metrics.NewBoundedLabels(metrics.MaxPriorityLabels)
	root.tenantLabels = metrics.NewBoundedLabels(metrics.MaxTenantLabels)
	for _, p := range parts[1:] {
		root.addLane(p)
	}
	return root, nil
}

// newLane returns the Consumer of one stream of the pipeline: all of it
// without partitions, else one partition. Lanes share slots and metrics.
func newLane(pool *pgxpool.Pool, rdb redis.UniversalClient, base *Config, name string, m *metrics.Consumer, slots chan struct{}, gate *backoff.Gate) *Consumer {
	c := *base
	c.Stream = name
	log := c.Logger.With(slog.String("consumer", c.Name))
	if name != base.Stream {
		log = log.With(slog.String("stream", name))
		// Each lane fetches its share of the idle handlers, so that one
		// waiting on an empty partition does not hold them all.
		c.ReadCount = max(1, (base.ReadCount+base.Partitions-1)/base.Partitions)
	}
	finishCtx, cancelFinish := context.WithCancel(context.Background())
	return &Consumer{
		finishCtx:    finishCtx,
		cancelFinish: cancelFinish,
		cfg:          &c,
		pool:         pool,
		rdb:          rdb,
		log:          log,
		m:            m,
		slots:        slots,
		work:         make(chan *delivery),
		results:      make(chan *result, max(2*c.Concurrency, resultsBuffer)),
		inflight:     map[string]time.Time{},
		abort:        make(chan struct{}),
		stallAfter:   stallAfterDefault,
		healthEvery:  healthEveryDefault,
		base:         base.Stream,
		gate:         gate,
		trimLog:      stream.TrimLog{Gate: gate},
	}
}

// addLane adds a Consumer for the stream name, unless one reads it
// already, and returns it (nil if there was one).
func (c *Consumer) addLane(name string) *Consumer {
	c.laneMu.Lock()
	defer c.laneMu.Unlock()
	if c.laneNames[name] {
		return nil
	}
	l := newLane(c.pool, c.rdb, c.baseCfg, name, c.m, c.slots, c.gate)
	l.stallAfter, l.healthEvery = c.stallAfter, c.healthEvery
	l.priorityLabels, l.tenantLabels = c.priorityLabels, c.tenantLabels // bounded across lanes
	c.lanes = append(c.lanes, l)
	c.laneNames[name] = true
	return l
}

// allLanes returns the root and its lanes.
func (c *Consumer) allLanes() []*Consumer {
	c.laneMu.Lock()
	defer c.laneMu.Unlock()
	return append([]*Consumer{c}, c.lanes...)
}

// Name is the consumer's name in the group.
func (c *Consumer) Name() string { return c.cfg.Name }

// Abort stops a Run that is shutting down at once: in-flight handlers are
// cancelled and not waited for; their entries stay pending for other
// consumers. For a second interrupt signal.
func (c *Consumer) Abort() {
	for _, l := range c.allLanes() {
		l.abortOnce.Do(func() {
			close(l.abort)
			l.cancelFinish()
		})
	}
}

// Run consumes until ctx is done, then stops reading, lets in-flight
// handlers finish for up to ShutdownTimeout and records their outcomes. It
// returns nil once stopped. Redis or PostgreSQL outages are retried with
// backoff. Run is called once per Consumer.
func (c *Consumer) Run(ctx context.Context) error {
	c.upgradeKeys(ctx)
	var lanes sync.WaitGroup
	defer lanes.Wait()
	for _, l := range c.allLanes()[1:] {
		lanes.Go(func() { l.runLane(ctx) })
	}
	lanes.Go(func() { c.discoverLoop(ctx, &lanes) })
	c.runLane(ctx)
	return nil
}

// runLane consumes the lane's stream until ctx is done (see Run).
func (c *Consumer) runLane(ctx context.Context) {
	c.log.InfoContext(ctx, "consumer: started", slog.String("stream", c.cfg.Stream),
		slog.String("group", c.cfg.Group), slog.Int("concurrency", c.cfg.Concurrency))
	if !c.ensureGroupRetrying(ctx) {
		return
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
	if c.laneNames != nil { // the root reports for the pipeline
		refresher.Go(func() { c.healthLoop(refreshCtx) })
	}
	completerDone := c.startRecorders()

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
	c.awaitHandlers(ctx, workersDone)
	cancelWork()
	c.awaitCancelledHandlers(ctx, workersDone, completerDone)
	stopRefresh()
	refresher.Wait()
	c.log.InfoContext(ctx, "consumer: stopped")
}

// startRecorders starts the recorders, which record results until
// c.results is closed; the channel it returns is closed once they all
// returned.
func (c *Consumer) startRecorders() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for i := range recorders {
			wg.Go(func() { c.completeLoop(i) })
		}
		wg.Wait()
	}()
	return done
}

// awaitHandlers waits, once Run's context is done, for the handlers in
// flight to return (workersDone closed), for up to ShutdownTimeout or until
// Abort.
func (c *Consumer) awaitHandlers(ctx context.Context, workersDone <-chan struct{}) {
	timeout := time.NewTimer(c.cfg.ShutdownTimeout)
	defer timeout.Stop()
	select {
	case <-workersDone:
	case <-timeout.C:
		c.log.WarnContext(ctx, "consumer: shutdown timeout; cancelling handlers, their jobs stay pending for others")
	case <-c.abort:
		c.log.WarnContext(ctx, "consumer: aborted; cancelling handlers, their jobs stay pending for others")
	}
}

// awaitCancelledHandlers waits a moment for the handlers, their context
// cancelled, to return, and then for the recorders to record their last
// results. Handlers that honour their context return at once; it does not
// wait long for those that don't.
func (c *Consumer) awaitCancelledHandlers(ctx context.Context, workersDone, recordersDone <-chan struct{}) {
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	select {
	case <-workersDone:
		close(c.results) // the completer records the last results and returns
		<-recordersDone
	case <-grace.C:
		c.log.ErrorContext(ctx, "consumer: handlers ignore cancellation; leaving them behind")
	}
}

// acquire takes between 1 and limit idle-handler slots, waiting for the
// first. It returns 0 once ctx is done.
func (c *Consumer) acquire(ctx context.Context, limit int) int {
	select {
	case <-ctx.Done():
		return 0
	case <-c.slots:
	}
	return 1 + c.tryAcquire(limit-1)
}

// tryAcquire takes up to limit slots without waiting.
func (c *Consumer) tryAcquire(limit int) int {
	n := 0
	for n < limit {
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

// track and untrack follow the entries in flight; the gauge, shared by
// the lanes, counts up and down.
func (c *Consumer) track(id string) {
	c.mu.Lock()
	_, had := c.inflight[id]
	c.inflight[id] = time.Now()
	c.mu.Unlock()
	if !had {
		c.m.InFlight.Inc()
	}
}

func (c *Consumer) untrack(ids ...string) {
	c.mu.Lock()
	gone := 0
	for _, id := range ids {
		if _, ok := c.inflight[id]; ok {
			delete(c.inflight, id)
			gone++
		}
	}
	c.mu.Unlock()
	c.m.InFlight.Sub(float64(gone))
}

func (c *Consumer) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// worker runs handlers until the work channel closes.
func (c *Consumer) worker(ctx context.Context) {
	for d := range c.work {
		start := time.Now()
		r := c.handle(ctx, d)
		select {
		case c.results <- r:
		case <-c.abort:
			// Nobody records results any more; the entry stays pending.
		}
		c.observeHold(time.Since(start))
		c.release(1)
	}
}

// handle runs the handler for d, unless d is settled already. A failure
// is retried with backoff or dead-lettered (see failed); what the handler
// says also tells the breaker whether the review service is up.
func (c *Consumer) handle(ctx context.Context, d *delivery) *result {
	switch d.settled {
	case settledAck:
		c.breakerNoVerdict(d.msg.ID)
		return &result{d: d, outcome: skipped}
	case settledDeadLetter:
		c.breakerNoVerdict(d.msg.ID)
		return &result{d: d, outcome: dead, err: errors.New(d.reason)}
	case notSettled: // the handler decides
	}
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	defer cancel()
	start := time.Now()
	err := callHandler(hctx, c.cfg.Handler, d.job)
	c.m.HandlerDuration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		c.breakerAnswered(d.msg.ID)
		return &result{d: d, outcome: reviewed}
	case ctx.Err() != nil:
		// Stopped by shutdown, not by the job: not a failed delivery.
		c.breakerNoVerdict(d.msg.ID)
		return &result{d: d, outcome: abandoned, err: err}
	case errors.Is(err, context.DeadlineExceeded) && hctx.Err() != nil:
		// The review service, or what it depends on, is too slow: the
		// same job may well pass later.
		err = Transient(fmt.Errorf("handler timed out after %s: %w", c.cfg.HandlerTimeout, err))
	}
	return c.failed(d, err)
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
// name a job and attempt the database takes (a job_id that is a UUID, an
// attempt from 1 that fits its integer column) cannot be recorded, and
// would fail the batch of updates it is part of; it is dead-lettered as it
// is, without calling the handler.
func newDelivery(msg redis.XMessage, deliveries int64) *delivery {
	d := &delivery{msg: msg, deliveries: deliveries}
	str := func(k string) string { s, _ := msg.Values[k].(string); return s }
	// A column's field is absent when it is NULL. Entries of every
	// jobrelay version so far write it so; one that held "" (an entry
	// written by hand, or by another publisher) is taken as it says.
	column := func(k string) *string {
		if s, ok := msg.Values[k].(string); ok {
			return &s
		}
		return nil
	}
	d.job = Job{
		ID:       str(stream.FieldJobID),
		Site:     column(stream.FieldSite),
		Title:    column(stream.FieldTitle),
		Company:  column(stream.FieldCompany),
		URL:      column(stream.FieldJobURL),
		TaskID:   msg.ID,
		Delivery: deliveries,
	}
	attemptField := str(stream.FieldAttempt)
	attempt, err := strconv.ParseInt(attemptField, 10, 32)
	switch {
	case d.job.ID == "":
		d.settle(settledDeadLetter, "malformed entry: no job_id")
	case db.CheckJobID(d.job.ID) != nil:
		d.settle(settledDeadLetter, "malformed entry: job_id "+quoteShort(d.job.ID)+" is not a UUID")
	case err != nil || attempt < 1:
		d.settle(settledDeadLetter, fmt.Sprintf("malformed entry: attempt %s is not a number from 1 to %d", quoteShort(attemptField), math.MaxInt32))
	}
	if d.settled == settledDeadLetter {
		// Dead-lettered as it is; logs show a short form of the ID.
		d.malformed, d.job.ID = true, shorten(d.job.ID, 64)
		return d
	}
	d.job.Attempt = int(attempt)
	d.job.EnqueuedAt, _ = time.Parse(time.RFC3339Nano, str(stream.FieldEnqueuedAt))
	// Only for the handler's information: a value that does not read is
	// left at its default, not a reason to fail the job.
	if p, err := strconv.ParseInt(str(stream.FieldPriority), 10, 16); err == nil {
		d.job.Priority = int(p)
	}
	d.job.Tenant = str(stream.FieldTenant)
	return d
}

// retrier retries what, logging when it starts failing and recovers.
func (c *Consumer) retrier(what string) *backoff.Retrier {
	return &backoff.Retrier{Logger: c.log, Level: slog.LevelError, Gate: c.gate,
		Failing: "consumer: " + what + " failed; retrying with backoff", Recovered: "consumer: " + what + " recovered"}
}

// errorText shortens an error for last_error and logs, and makes it text
// PostgreSQL stores: valid UTF-8 without NUL bytes, cut between runes.
// Handlers' errors carry what commands wrote to stderr, which may be
// anything.
func errorText(err error) string {
	const limit = 2000
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	return shorten(s, limit)
}

// shorten cuts s after limit bytes, at a rune boundary, marking the cut.
func shorten(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quoteShort quotes what may be a huge value, for an error message.
func quoteShort(s string) string {
	const shown = 64
	if len(s) > shown {
		return strconv.Quote(s[:shown]) + "…"
	}
	return strconv.Quote(s)
}

// Ready returns nil while the consumer records its results, and an error
// that names the problem while it cannot: a recorder has been at the same
// batch of results for more than 30 seconds, retrying a server that fails
// or waiting for one that does not answer. Its handlers then wait for
// their results to be recorded, so no job gets finished. It is the
// consumer's check for /readyz. The consumer also shows the problem in the
// jobrelay_consumer_recorder_stalled gauge, and reports it to Redis for
// `jobrelay status --check` and inspect.Snapshot.Health.
func (c *Consumer) Ready() error {
	if problem, _ := c.stallAll(time.Now()); problem != "" {
		return errors.New(problem)
	}
	return nil
}

// stallAll is stall of the lane that has been stalled the longest.
func (c *Consumer) stallAll(now time.Time) (problem string, since time.Time) {
	for _, l := range c.allLanes() {
		if p, s := l.stall(now); p != "" && (problem == "" || s.Before(since)) {
			problem, since = p, s
			if l != c {
				problem = l.cfg.Stream + ": " + problem
			}
		}
	}
	return problem, since
}

// stall describes the recorder stuck at its batch for the longest, if one
// has been for more than stallAfter, and since when.
func (c *Consumer) stall(now time.Time) (problem string, since time.Time) {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	var worst *recording
	for i := range c.recs {
		r := &c.recs[i]
		if !r.since.IsZero() && now.Sub(r.since) > c.stallAfter && (worst == nil || r.since.Before(worst.since)) {
			worst = r
		}
	}
	if worst == nil {
		return "", time.Time{}
	}
	cause := "waiting for PostgreSQL or Redis to answer"
	if worst.err != "" {
		cause = "last error: " + worst.err
	}
	return fmt.Sprintf("recording results is stalled: %d results have waited %s to be recorded (%s)",
		worst.results, now.Sub(worst.since).Round(time.Second), cause), worst.since
}

// startRecording, recordingFailed and stopRecording follow recorder rec's
// batch, for Ready.
func (c *Consumer) startRecording(rec, results int) {
	c.recMu.Lock()
	c.recs[rec] = recording{since: time.Now(), results: results}
	c.recMu.Unlock()
}

func (c *Consumer) recordingFailed(rec int, err error) {
	c.recMu.Lock()
	c.recs[rec].err = shorten(err.Error(), 500)
	c.recMu.Unlock()
}

func (c *Consumer) stopRecording(rec int) {
	c.recMu.Lock()
	c.recs[rec] = recording{}
	c.recMu.Unlock()
}

// healthLoop keeps the recorder-stalled gauge and this consumer's health
// report in Redis up to date until ctx is done, and then clears the report.
func (c *Consumer) healthLoop(ctx context.Context) {
	rep := &stream.HealthReporter{Client: c.rdb, Stream: c.base, Component: "consumer " + c.cfg.Name}
	ticker := time.NewTicker(c.healthEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := rep.Close(ctx); err != nil {
				c.log.WarnContext(ctx, "consumer: clearing its health report failed; readers ignore it once stale",
					slog.String("err", err.Error()))
			}
			return
		case <-ticker.C:
		}
		problem, since := c.stallAll(time.Now())
		if problem != "" {
			c.m.RecorderStalled.Set(1)
		} else {
			c.m.RecorderStalled.Set(0)
		}
		if err := rep.Update(ctx, problem, since); err != nil && ctx.Err() == nil {
			// Redis is down, most likely: said by the steps that need it.
			c.log.DebugContext(ctx, "consumer: reporting its health failed", slog.String("err", err.Error()))
		}
	}
}
