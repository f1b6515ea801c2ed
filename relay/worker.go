package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	committed stream.DedupRecords // dedup records of the worker's last committed batch
	// next is the batch claimed with the last COMMIT, in the transaction
	// now open on conn, for the next cycle; nil if none.
	next *claim
	// claimRowErr is a row's error that failed the claim made with the
	// last COMMIT: the next cycle isolates that row instead of claiming.
	// (A claim of its own might not meet the row: one claim in
	// AgingEvery takes the oldest jobs, the others the highest priority.)
	claimRowErr error
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
	return c, c.claimed > 0 && !c.drained && (mode == untilEmpty || c.full), nil
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
}

// cycle claims, publishes and commits one batch of at most room.held
// jobs, and says what it did; if cl holds jobs, they were claimed with the
// last COMMIT and cycle goes on from there. It runs to the end even when
// ctx is cancelled (shutdown), within CycleTimeout. If a row's data fails a
// statement, it isolates that row (see isolate). When mode calls for
// another cycle, the COMMIT carries that cycle's claim (see commit).
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
	if cause := w.claimRowErr; cause != nil { // no claim in hand: commit made none
		w.claimRowErr = nil
		return w.isolate(parent, room, nil, cause)
	}
	if jobs == nil {
		limit = room.held
		jobs, claimed, err = db.BeginClaimWith(ctx, conn, r.claimParams(limit), w.jobs)
		if err != nil {
			m.Errors.WithLabelValues("claim").Inc()
			w.rollback(ctx)
			if db.IsRowError(err) {
				return w.isolate(parent, room, nil, err)
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

	b, err := w.publish(ctx, conn, room, jobs)
	if err != nil {
		m.Errors.WithLabelValues("publish").Inc()
		w.rollback(ctx)
		return c, err
	}
	chain := parent.Err() == nil && (mode == untilEmpty || claimed.More)
	next, err := w.commit(ctx, conn, &b.commit, chain)
	if err != nil {
		m.Errors.WithLabelValues("commit").Inc()
		w.rollback(ctx)
		if db.IsRowError(err) {
			return w.isolateBatch(parent, room, jobs, limit, err)
		}
		return c, err
	}
	// Committed: no claim can publish these (job, attempt) pairs again, so
	// the next Publish deletes their dedup records. Until a COMMIT is known
	// to have succeeded, the records stay.
	w.committed = b.records
	if r.hooks.afterCommit != nil {
		r.hooks.afterCommit()
	}

	r.committedBatch(ctx, start, len(jobs), &b)
	c = cycleResult{claimed: len(jobs), full: claimed.More, failed: b.commit.FailedIDs}
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
	jobs, claimed, committed, err := db.CommitInReviewAndClaim(ctx, conn, p, r.claimParams(next.limit), w.spare)
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
			w.claimRowErr = err
		} else {
			r.log.DebugContext(ctx, "relay: claim with the commit failed; the next cycle claims again", slog.String("err", err.Error()))
		}
		return nil, nil //nolint:nilnil // committed; no claim in hand, and the cycle did not fail
	default:
		room.release()
		return nil, err
	}
}

// isolateBatch runs the isolating cycle over a claimed batch whose COMMIT
// a row's data failed with cause.
func (w *worker) isolateBatch(parent context.Context, room *reservation, jobs []db.Job, limit int, cause error) (cycleResult, error) {
	ids := make([]string, len(jobs))
	for i := range jobs {
		ids[i] = jobs[i].ID
	}
	c, err := w.isolate(parent, room, ids, cause)
	c.full = len(jobs) == limit // whatever other relays took meanwhile
	return c, err
}

// committedBatch counts and logs a batch of claimed jobs once committed.
func (r *Relay) committedBatch(ctx context.Context, start time.Time, claimed int, b *publishedBatch) {
	elapsed := time.Since(start)
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
	case err != nil:
		r.m.Cycles.WithLabelValues("error").Inc()
	case c.claimed == 0:
		r.m.Cycles.WithLabelValues("empty").Inc()
	default:
		r.m.Cycles.WithLabelValues("published").Inc()
	}
}

// publishedBatch is a claimed batch once published.
type publishedBatch struct {
	published []db.Job            // the jobs published, the others failed
	commit    db.InReviewParams   // what the COMMIT records
	records   stream.DedupRecords // their dedup records, to delete once committed
}

// publish publishes the claimed jobs whose entry fits, and says what to
// commit: those in_review, the others failed.
func (w *worker) publish(ctx context.Context, conn *pgx.Conn, room *reservation, jobs []db.Job) (b publishedBatch, err error) {
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
		Forget:     w.committed,
	})
	// Even a failed script may have added entries: count them.
	room.published(len(publishable), size)
	if err != nil {
		return b, err
	}
	w.committed = stream.DedupRecords{} // applied
	if r.hooks.afterPublish != nil {
		r.hooks.afterPublish(ctx, conn)
	}
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
