package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// worker runs cycles on a PostgreSQL connection of its own, with the relay's
// timeouts. While one worker waits for Redis, another can commit.
type worker struct {
	r         *Relay
	conn      *pgx.Conn           // opened at its first cycle, replaced when broken
	jobs      []db.Job            // reused claim buffer
	spare     []db.Job            // the other buffer, for a claim made while jobs is in use
	ahead     []db.Job            // the buffer of a batch claimed ahead (see publishClaimingAhead)
	committed stream.DedupRecords // dedup records of the worker's last committed batch
	// next is the batch claimed with the last COMMIT, in the transaction
	// now open on conn, for the next cycle; nil if none.
	next *claim
	// claimRowErr is the claim made with the last COMMIT, failed by a
	// row's data: the next cycle isolates that row instead of claiming.
	// (A claim of its own might not meet the row: one claim in
	// AgingEvery takes the oldest jobs, the others the highest priority.)
	claimRowErr *rowClaimError
	// aheadFailed says that the last claim ahead failed: cycles claim no
	// batch ahead until one commits.
	aheadFailed bool
	// aheadRowErr is the last claim ahead, failed by a row's data: the
	// next cycle that commits does so alone, and the cycle after it
	// isolates the row.
	aheadRowErr *rowClaimError
}

// rowClaimError is a claim that a row's data failed, and what it claimed:
// the isolating cycle claims in the same order, so that it meets the row
// in its first batch, not once every job before the row in another order
// has gone.
type rowClaimError struct {
	err   error
	claim *db.ClaimParams
}

// claim is a batch claimed in an open transaction, not yet published.
type claim struct {
	room    *reservation // its room, less what the claim did not use
	limit   int          // the room the claim had
	jobs    []db.Job
	claimed db.Claimed
}

// drainMode says when draining stops.
type drainMode int

const (
	// untilShort stops at a batch that is not full: the backlog is gone,
	// and the next wake-up brings what comes after it (Run).
	untilShort drainMode = iota
	// untilEmpty stops only at a cycle that claims nothing (Drain).
	untilEmpty
)

// drain runs cycles until mode says to stop, ctx is done, or a cycle fails.
func (w *worker) drain(ctx context.Context, mode drainMode) (res DrainResult, err error) {
	defer w.dropNext(ctx)
	for ctx.Err() == nil {
		c, more, err := w.step(ctx, mode)
		res.add(c)
		if err != nil {
			return res, err
		}
		if !more {
			break
		}
	}
	return res, nil
}

// step runs one cycle, unless ctx is done, and says whether mode calls for
// another. A batch is full when it claimed all the room it had:
// backpressure may have given it less than BatchSize.
func (w *worker) step(ctx context.Context, mode drainMode) (c cycleResult, more bool, err error) {
	select {
	case <-ctx.Done():
		return c, false, nil // stopping: no new cycle
	default:
	}
	if w.next == nil {
		room, err := w.r.reserve(ctx)
		if err != nil {
			return c, false, err
		}
		if room == nil { // ctx is done
			return c, false, nil
		}
		w.next = &claim{room: room}
	}
	next := w.next
	w.next = nil
	c, err = w.cycle(ctx, next, mode)
	if err != nil {
		return c, false, err
	}
	return c, c.retry || c.claimed > 0 && !c.drained && (mode == untilEmpty || c.full), nil
}

// dropNext rolls back a batch claimed for a cycle that will not run
// (the relay is stopping): its jobs stay pending, unpublished.
func (w *worker) dropNext(ctx context.Context) {
	if w.next == nil {
		return
	}
	w.next.room.release()
	w.next = nil
	w.rollback(ctx)
}

// cycleResult is what one cycle did.
type cycleResult struct {
	claimed   int      // jobs claimed: relayed, failed or left alone
	full      bool     // the claim took all the room it had: more may wait
	failed    []string // jobs marked failed instead of relayed
	leftAlone []string // jobs that could not even be marked failed
	drained   bool     // the claim made with the COMMIT found nothing more
	retry     bool     // nothing was committed, but another cycle should run now
}

// cycle claims, publishes and commits one batch of at most room.held
// jobs, and a second one claimed ahead if the first was full (see
// publishClaimingAhead), and says what it did; if cl holds jobs, they
// were claimed with the last COMMIT and cycle goes on from there. It runs
// to the end even when ctx is cancelled (shutdown), within CycleTimeout.
// If a row's data fails a statement, it isolates that row (see isolate).
// When mode calls for another cycle, the COMMIT carries that cycle's claim
// (see commit).
func (w *worker) cycle(parent context.Context, cl *claim, mode drainMode) (c cycleResult, err error) {
	room := cl.room
	r := w.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.cfg.CycleTimeout)
	defer cancel()
	defer room.release()
	start := time.Now()
	m := r.m
	defer func() { r.countCycle(c, err) }()

	if cl.jobs != nil && (w.conn == nil || w.conn.IsClosed()) {
		// The rows are locked by a transaction that is gone: another relay
		// may have them now. Never publish them from a new connection.
		m.Errors.WithLabelValues("claim").Inc()
		return c, errors.New("relay: the connection that claimed the next batch closed before it was published")
	}
	conn, err := w.cycleConn(ctx)
	if err != nil {
		m.Errors.WithLabelValues("claim").Inc()
		return c, err
	}
	jobs, claimed, limit := cl.jobs, cl.claimed, cl.limit
	if failed := w.claimRowErr; failed != nil { // no claim in hand: commit made none
		w.claimRowErr = nil
		return w.isolate(parent, room, nil, failed.claim, failed.err)
	}
	if jobs == nil {
		limit = room.held
		p := r.claimParams(limit)
		jobs, claimed, err = db.BeginClaimWith(ctx, conn, p, w.jobs)
		if err != nil {
			m.Errors.WithLabelValues("claim").Inc()
			w.rollback(ctx)
			if db.IsRowError(err) {
				return w.isolate(parent, room, nil, p, err)
			}
			return c, err
		}
		w.jobs = jobs
		r.claimed(jobs, claimed)
		room.giveBack(limit - len(jobs))
		if len(jobs) == 0 {
			w.rollback(ctx)
			w.forgetCommitted(ctx)
			return c, nil
		}
	}
	r.log.InfoContext(ctx, "Found "+strconv.Itoa(len(jobs))+" jobs pending review", slog.Int("num_jobs", len(jobs)))

	chain := parent.Err() == nil && (mode == untilEmpty || claimed.More)
	var aheadRoom *reservation
	if chain && !r.cfg.TenantFair && !w.aheadFailed {
		aheadRoom = r.reserveOnReading()
	}
	first, ahead, retry, err := w.publishClaimingAhead(ctx, conn, room, jobs, aheadRoom)
	if err != nil || retry {
		return cycleResult{retry: retry}, err
	}
	if w.aheadRowErr != nil {
		// The last claim ahead failed on a row: commit this batch alone,
		// and let the next cycle isolate the row.
		chain = false
	}
	first.start = start
	aheadStart := time.Now()
	batches := []*publishedBatch{&first}
	last := &first
	if ahead != nil && len(ahead.jobs) == 0 {
		// Nothing more is pending: commit alone, and go idle.
		ahead.room.release()
		ahead, chain = nil, false
		c.drained = true
		r.countCycle(cycleResult{}, nil) // the empty cycle that ends a drain
	}
	if ahead != nil {
		defer ahead.room.release()
		r.log.InfoContext(ctx, "Found "+strconv.Itoa(len(ahead.jobs))+" jobs pending review", slog.Int("num_jobs", len(ahead.jobs)))
		second, err := w.publishRecording(ctx, conn, ahead, &first.commit)
		second.start = aheadStart
		if err != nil {
			if db.IsRowError(err) { // the first batch's UPDATE: a Redis error is no row's
				return w.isolateBatch(parent, room, limit, err, jobs)
			}
			return c, err
		}
		batches, last = append(batches, &second), &second
		claimed = ahead.claimed
		chain = parent.Err() == nil && (mode == untilEmpty || claimed.More)
	}
	next, err := w.commit(ctx, conn, &last.commit, chain)
	if err != nil {
		m.Errors.WithLabelValues("commit").Inc()
		w.rollback(ctx)
		if db.IsRowError(err) {
			claimed := [][]db.Job{jobs}
			if ahead != nil {
				claimed = append(claimed, ahead.jobs)
			}
			return w.isolateBatch(parent, room, limit, err, claimed...)
		}
		return c, err
	}
	// Committed: no claim can publish these (job, attempt) pairs again, so
	// the next Publish deletes their dedup records. Until a COMMIT is known
	// to have succeeded, the records stay.
	// Records a publish did not delete (it published nothing) stay to
	// forget as well.
	forget := slices.Clip(w.committed.Fields)
	for _, b := range batches {
		forget = append(forget, b.records.Fields...)
	}
	w.committed = stream.DedupRecords{Fields: forget}
	w.aheadFailed = false
	if w.aheadRowErr != nil { // this batch committed alone
		w.claimRowErr, w.aheadRowErr = w.aheadRowErr, nil
	}
	if r.hooks.afterCommit != nil {
		r.hooks.afterCommit()
	}

	c.full = claimed.More
	for i, b := range batches {
		n := len(b.published) + len(b.commit.FailedIDs)
		c.claimed += n
		if i > 0 {
			r.countCycle(cycleResult{claimed: n}, nil) // the batch claimed ahead is a cycle of its own
		}
		r.committedBatch(ctx, n, b)
		c.failed = append(c.failed, b.commit.FailedIDs...)
	}
	if c.drained {
		w.forgetCommitted(ctx)
	}
	if next != nil {
		if len(next.jobs) == 0 {
			next.room.release()
			w.rollback(ctx)
			w.forgetCommitted(ctx)
			r.countCycle(cycleResult{}, nil) // the empty cycle that ends a drain
			c.drained = true
		} else {
			// The claim used the spare buffer: jobs is done with.
			w.jobs, w.spare = next.jobs, w.jobs
			w.next = next
		}
	}
	return c, nil
}

// Claiming ahead. A worker has one connection, so while it waits for Redis
// its PostgreSQL session idles, and while it waits for PostgreSQL Redis
// does. While a backlog drains, a cycle's transaction therefore carries a
// second batch: it is claimed while the first is published, and published
// while the first is marked in_review; its UPDATE and the COMMIT then end
// the transaction, as one batch's would. Each wait for Redis but the last
// overlaps a PostgreSQL round trip. The transaction holds up to twice
// BatchSize row locks, for the same CycleTimeout; the second claim passes
// over the first batch's rows by ID (SKIP LOCKED does not skip a
// transaction's own locks), and takes room of its own (backpressure). A
// batch that is not full (no backlog) is committed alone, as before.

// publishClaimingAhead publishes jobs and, if aheadRoom is not nil, claims
// the next batch in the same transaction meanwhile. ahead is that claim;
// nil if none was made. On error the transaction is rolled back and
// aheadRoom released.
//
// A failed claim ahead aborts the transaction, so the batch in hand,
// published, is rolled back too. Then the next cycle claims afresh
// (getting that batch again, unless another relay took it: either way its
// entries are reused) and commits its batch alone, without claiming ahead:
// a claim ahead that keeps failing must never keep the batch before it
// from committing. If a row's data failed the claim, the cycle after that
// isolates the row (see isolate), as after a failed claim made with a
// COMMIT, and the failed cycle asks for it at once (retry).
func (w *worker) publishClaimingAhead(ctx context.Context, conn *pgx.Conn, room *reservation, jobs []db.Job, aheadRoom *reservation) (b publishedBatch, ahead *claim, retry bool, err error) {
	r := w.r
	var claimAhead func() error
	var p *db.ClaimParams
	if aheadRoom != nil {
		claimAhead = func() error {
			p = r.claimParams(aheadRoom.held)
			p.Except = slices.Grow(slices.Clip(p.Except), len(jobs))
			for i := range jobs {
				p.Except = append(p.Except, jobs[i].ID)
			}
			if r.hooks.beforeClaimAhead != nil {
				r.hooks.beforeClaimAhead(ctx, conn)
			}
			next, claimed, err := db.ClaimMore(ctx, conn, p, w.ahead)
			if err != nil {
				return err
			}
			w.ahead = next
			r.claimed(next, claimed)
			aheadRoom.giveBack(p.Limit - len(next))
			ahead = &claim{room: aheadRoom, limit: p.Limit, jobs: next, claimed: claimed}
			return nil
		}
	}
	forget := w.committed
	pubErr, claimErr := alongside(func() error {
		var err error
		b, err = w.publish(ctx, room, jobs, forget)
		return err
	}, claimAhead)
	if pubErr == nil && b.forgot {
		w.committed = stream.DedupRecords{} // applied
	}
	if pubErr == nil {
		w.afterPublish(ctx, conn)
	}
	if pubErr == nil && claimErr == nil {
		return b, ahead, false, nil
	}
	if ahead != nil {
		ahead.room.release()
	} else if aheadRoom != nil {
		aheadRoom.release()
	}
	w.rollback(ctx)
	if pubErr != nil {
		r.m.Errors.WithLabelValues("publish").Inc()
		return b, nil, false, pubErr
	}
	r.m.Errors.WithLabelValues("claim").Inc()
	w.aheadFailed = true
	if db.IsRowError(claimErr) {
		w.aheadRowErr = &rowClaimError{err: claimErr, claim: p}
		r.log.DebugContext(ctx, "relay: a row's data failed the claim ahead; the next cycle commits its batch alone, the one after isolates the row", slog.String("err", claimErr.Error()))
		return b, nil, true, nil
	}
	return b, nil, false, claimErr
}

// publishRecording publishes the batch claimed ahead while the first
// batch's UPDATEs (p) run. On error the transaction is rolled back.
func (w *worker) publishRecording(ctx context.Context, conn *pgx.Conn, ahead *claim, p *db.InReviewParams) (b publishedBatch, err error) {
	r := w.r
	pubErr, recErr := alongside(func() error {
		var err error
		b, err = w.publish(ctx, ahead.room, ahead.jobs, stream.DedupRecords{})
		return err
	}, func() error {
		return db.MarkInReview(ctx, conn, p)
	})
	if pubErr == nil {
		w.afterPublish(ctx, conn)
	}
	switch {
	case pubErr != nil:
		r.m.Errors.WithLabelValues("publish").Inc()
		w.rollback(ctx)
		return b, pubErr
	case recErr != nil:
		r.m.Errors.WithLabelValues("commit").Inc()
		w.rollback(ctx)
		return b, fmt.Errorf("record the first batch: %w", recErr)
	}
	return b, nil
}

// alongside runs pub on a goroutine of its own while pg, if not nil, runs
// on the caller's, and returns once both have.
func alongside(pub, pg func() error) (pubErr, pgErr error) {
	if pg == nil {
		return pub(), nil
	}
	done := make(chan error, 1)
	go func() { done <- pub() }()
	pgErr = pg()
	return <-done, pgErr
}

// afterPublish runs the test hook after a publish, on the cycle's
// goroutine.
func (w *worker) afterPublish(ctx context.Context, conn *pgx.Conn) {
	if w.r.hooks.afterPublish != nil {
		w.r.hooks.afterPublish(ctx, conn)
	}
}

// commit records a published batch and commits. With chain it also claims
// the next batch in the same round trip, if the last backpressure reading
// leaves room for a full one (the transaction waits for no Redis reading)
// and the claim can (not a fair one); it returns that claim, nil if there
// is none. A claim that fails after the COMMIT is rolled back: the next
// cycle isolates the row if a row's data failed it, or claims afresh.
func (w *worker) commit(ctx context.Context, conn *pgx.Conn, p *db.InReviewParams, chain bool) (*claim, error) {
	r := w.r
	var room *reservation
	if chain && !r.cfg.TenantFair {
		room = r.reserveOnReading()
	}
	if room == nil {
		return nil, db.CommitInReview(ctx, conn, p)
	}
	next := &claim{room: room, limit: room.held}
	np := r.claimParams(next.limit)
	jobs, claimed, committed, err := db.CommitInReviewAndClaim(ctx, conn, p, np, w.spare)
	switch {
	case err == nil:
		r.claimed(jobs, claimed)
		room.giveBack(next.limit - len(jobs))
		next.jobs, next.claimed = jobs, claimed
		return next, nil
	case committed:
		room.release()
		r.m.Errors.WithLabelValues("claim").Inc()
		w.rollback(ctx)
		if db.IsRowError(err) {
			w.claimRowErr = &rowClaimError{err: err, claim: np}
		} else {
			r.log.DebugContext(ctx, "relay: claim with the commit failed; the next cycle claims again", slog.String("err", err.Error()))
		}
		return nil, nil //nolint:nilnil // committed; no claim in hand, and the cycle did not fail
	default:
		room.release()
		return nil, err
	}
}

// isolateBatch runs the isolating cycle over claimed batches (the first of
// at most limit jobs) whose UPDATE or COMMIT a row's data failed with
// cause.
func (w *worker) isolateBatch(parent context.Context, room *reservation, limit int, cause error, batches ...[]db.Job) (cycleResult, error) {
	var ids []string
	for _, jobs := range batches {
		for i := range jobs {
			ids = append(ids, jobs[i].ID)
		}
	}
	c, err := w.isolate(parent, room, ids, nil, cause)
	c.full = len(ids) >= limit // whatever other relays took meanwhile
	return c, err
}

// committedBatch counts and logs a batch of claimed jobs once committed.
func (r *Relay) committedBatch(ctx context.Context, claimed int, b *publishedBatch) {
	elapsed := time.Since(b.start)
	failedIDs, failedErrs := b.commit.FailedIDs, b.commit.FailedErrors
	r.m.JobsRelayed.Add(float64(len(b.published)))
	r.m.JobsUnpublishable.Add(float64(len(failedIDs)))
	r.m.CycleDuration.Observe(elapsed.Seconds())
	r.m.BatchSize.Observe(float64(claimed))
	r.logJobs(ctx, b.published, b.commit.StreamIDs, failedIDs, failedErrs)
	r.log.InfoContext(ctx, "Cycle complete: enqueued "+strconv.Itoa(len(b.published))+" jobs for review",
		slog.Int("num_enqueued", len(b.published)), slog.Int("num_failed", len(failedIDs)),
		slog.Duration("duration", elapsed))
}

// countCycle counts a cycle by its result.
func (r *Relay) countCycle(c cycleResult, err error) {
	switch {
	case err != nil || c.retry:
		r.m.Cycles.WithLabelValues("error").Inc()
	case c.claimed == 0:
		r.m.Cycles.WithLabelValues("empty").Inc()
	default:
		r.m.Cycles.WithLabelValues("published").Inc()
	}
}

// publishedBatch is a claimed batch once published.
type publishedBatch struct {
	start     time.Time           // when its cycle began: its claim, or its publish if claimed ahead
	forgot    bool                // the publish deleted the dedup records it was given
	published []db.Job            // the jobs published, the others failed
	commit    db.InReviewParams   // what the COMMIT records
	records   stream.DedupRecords // their dedup records, to delete once committed
}

// publish publishes the claimed jobs whose entry fits, deleting the dedup
// records forget names, and says what to commit: those in_review, the
// others failed. It touches Redis only, so it can run beside a statement
// on the worker's connection.
func (w *worker) publish(ctx context.Context, room *reservation, jobs []db.Job, forget stream.DedupRecords) (b publishedBatch, err error) {
	r := w.r
	now := time.Now().UTC()
	enqueuedAt := now.Format(time.RFC3339Nano)
	publishable, failedIDs, failedErrs, size := r.splitOversized(jobs, enqueuedAt)
	room.giveBack(len(failedIDs))
	b.commit = db.InReviewParams{EnqueuedAt: now, FailedIDs: failedIDs, FailedErrors: failedErrs}
	b.published = publishable
	if len(publishable) == 0 {
		return b, nil
	}
	pub, err := stream.Publish(ctx, r.rdb, &stream.PublishParams{
		Stream:     r.cfg.Stream,
		Partitions: r.cfg.Partitions,
		DedupTTL:   r.cfg.DedupTTL,
		EnqueuedAt: enqueuedAt,
		Jobs:       publishable,
		Forget:     forget,
	})
	// Even a failed script may have added entries: count them.
	room.published(len(publishable), size)
	if err != nil {
		return b, err
	}
	b.forgot = true
	b.commit.IDs = make([]string, len(publishable))
	for i := range publishable {
		b.commit.IDs[i] = publishable[i].ID
	}
	b.commit.StreamIDs, b.commit.Streams = pub.StreamIDs, pub.Streams
	b.records = pub.Records
	return b, nil
}

// splitOversized sets aside the jobs whose entry would exceed MaxEntryBytes.
// size is the bytes of field values of the others.
func (r *Relay) splitOversized(jobs []db.Job, enqueuedAt string) (ok []db.Job, failedIDs, failedErrs []string, size int) {
	for i := range jobs {
		s := stream.EntrySize(&jobs[i], enqueuedAt)
		if s > r.cfg.MaxEntryBytes {
			if ok == nil {
				ok = append(make([]db.Job, 0, len(jobs)), jobs[:i]...)
			}
			failedIDs = append(failedIDs, jobs[i].ID)
			failedErrs = append(failedErrs, fmt.Sprintf(
				"relay: stream entry would be %d bytes, over the %d-byte limit (MaxEntryBytes); fix the row and retry it", s, r.cfg.MaxEntryBytes))
			continue
		}
		size += s
		if ok != nil {
			ok = append(ok, jobs[i])
		}
	}
	if ok == nil && failedIDs == nil {
		ok = jobs
	}
	return ok, failedIDs, failedErrs, size
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

// cycleConn returns the worker's connection, connecting if needed.
func (w *worker) cycleConn(ctx context.Context) (*pgx.Conn, error) {
	if w.conn != nil && !w.conn.IsClosed() {
		return w.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, w.r.connCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	w.conn = conn
	return conn, nil
}

// rollback ends a failed cycle's transaction; if that fails too, the
// connection is closed (PostgreSQL then rolls back) and replaced next cycle.
func (w *worker) rollback(ctx context.Context) {
	if w.conn == nil {
		return
	}
	// The cycle's deadline may be what ended it: the ROLLBACK gets a
	// deadline of its own, so the row locks go now, not whenever
	// PostgreSQL notices a closed connection.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := db.Rollback(ctx, w.conn); err != nil {
		w.r.log.DebugContext(ctx, "relay: rollback failed; connection closed", slog.String("err", err.Error()))
		w.closeConn()
	}
}

func (w *worker) closeConn() {
	if w.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = w.conn.Close(ctx)
		w.conn = nil
	}
}

// forgetCommitted deletes the dedup records of the worker's last committed
// batch when the worker goes idle: otherwise the next publish would, and with
// no next publish they would wait for DEDUP_TTL. A failure only leaves them
// to expire.
func (w *worker) forgetCommitted(ctx context.Context) {
	if len(w.committed.Fields) == 0 {
		return
	}
	r := w.r
	if _, err := stream.Publish(ctx, r.rdb, &stream.PublishParams{
		Stream: r.cfg.Stream, Partitions: r.cfg.Partitions, DedupTTL: r.cfg.DedupTTL, Forget: w.committed,
	}); err != nil {
		r.log.DebugContext(ctx, "relay: deleting dedup records failed; they expire after DedupTTL", slog.String("err", err.Error()))
		return
	}
	w.committed = stream.DedupRecords{}
}
