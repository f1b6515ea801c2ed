package relay

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// A row that cannot be updated never blocks the others.
//
// The cycle's claim and UPDATE cover the whole batch, so one row whose data
// fails a statement (a trigger of the application raises, a CHECK or
// deferred constraint is violated, a value does not fit) would fail every
// retry of that cycle, and the jobs behind it would wait for good. When a
// cycle fails with such an error (db.RowError; never a lost connection, a
// timeout or a Redis error, which are retried with backoff as before), the
// worker runs one isolating cycle over the same rows: it claims them again in
// a transaction that checks deferred constraints at each statement, reads
// them, publishes them (idempotently: the entries the failed cycle added
// are reused) and marks them in_review, each step bisecting the batch in
// savepoints down to the rows that fail it. Those are marked failed with
// the database's error in last_error, as jobs too large for an entry are,
// and the others commit in_review. The happy path costs what it did: the
// isolating cycle runs only after a failure.
//
// A row can refuse even the update to failed (a trigger that rejects every
// update of it). Left pending_review, the next claim would take it again,
// and the cycle would fail, isolate and fail to mark it, for ever. So the
// relay leaves such a row alone for the rest of the process's life: its
// claims pass over it, one Error line names it and the jobs_skipped gauge
// counts it. Each relay process tries such a row once; after the row is
// fixed, a restart relays it.
//
// A row that refuses in_review was published first (the cycle publishes,
// then updates): its entry is a stray, which the relay deletes once the
// isolating cycle has committed, so that no handler reviews a job the
// database refused. A consumer may have read it in the milliseconds
// before; then the job's compare-and-set (in_review, or pending_review,
// at the entry's attempt) does not match the failed job, and the entry is
// acknowledged without recording a review. A row left alone stays
// pending_review at that attempt; its entry goes too, but its dedup record
// stays, so another relay that claims the row reuses that entry ID rather
// than adding another stray.

// rowFailure is a row that an isolating cycle could not relay.
type rowFailure struct {
	id     string
	reason string // its last_error
}

// isolate runs the isolating cycle after a cycle failed with cause, over
// the jobs in only, or over a new claim if only is nil: the claim itself
// failed, and the new one takes failed's order (oldest first or by
// priority, shared between tenants or not), so that it meets the row the
// failed claim met.
func (w *worker) isolate(parent context.Context, room *reservation, only []string, failed *db.ClaimParams, cause error) (c cycleResult, err error) {
	r := w.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.cfg.CycleTimeout)
	defer cancel()
	start := time.Now()
	m := r.m
	r.log.WarnContext(ctx, "relay: a row's data failed the cycle; isolating it", slog.String("err", cause.Error()))
	fail := func(kind string, err error) (cycleResult, error) {
		m.Errors.WithLabelValues(kind).Inc()
		w.rollback(ctx)
		return cycleResult{}, err
	}

	conn, err := w.cycleConn(ctx)
	if err != nil {
		return fail("claim", err)
	}
	limit := room.held
	p := &db.ClaimIDsParams{Limit: limit, Except: r.skipped(), Only: only, Timeout: r.cfg.CycleTimeout}
	if failed != nil {
		p.Oldest, p.Fair = failed.Oldest, failed.Fair
	}
	ids, claimed, err := db.BeginClaimIDs(ctx, conn, p)
	if err != nil && p.Fair != nil && db.IsRowError(err) {
		// A row's data failed what a fair claim reads besides IDs (the
		// names of the tenants with pending jobs): claim by priority
		// alone, which reaches the row in time.
		w.rollback(ctx)
		p.Fair = nil
		if conn, err = w.cycleConn(ctx); err == nil {
			ids, claimed, err = db.BeginClaimIDs(ctx, conn, p)
		}
	}
	if err != nil {
		return fail("claim", err)
	}
	if only == nil {
		r.claimed(nil, claimed) // a tenant held back by its cap
	}
	// A fair claim can be short of its limit with more behind it.
	c.full = claimed.More
	if len(ids) == 0 { // another relay took them meanwhile
		w.rollback(ctx)
		return c, nil
	}
	c.claimed = len(ids)

	iso := &isolation{conn: conn}
	jobs, err := iso.load(ctx, ids)
	if err != nil {
		return fail("claim", err)
	}
	iso.now = time.Now().UTC()
	// Only new rows count toward the room: the failed cycle's are counted.
	if err := w.publishIsolated(ctx, iso, jobs, room, only == nil); err != nil {
		return fail("publish", err)
	}
	if err := iso.markInReview(ctx); err != nil {
		return fail("commit", err)
	}
	if err := iso.markFailed(ctx); err != nil {
		return fail("commit", err)
	}
	fresh := r.passOver(ctx, iso.alone)
	if err := db.Commit(ctx, conn); err != nil {
		return fail("commit", err)
	}
	relayed, streamIDs, failedReasons := w.afterIsolation(ctx, iso, fresh, &c)

	elapsed := time.Since(start)
	m.JobsRelayed.Add(float64(len(relayed)))
	m.JobsUnpublishable.Add(float64(len(c.failed)))
	m.CycleDuration.Observe(elapsed.Seconds())
	m.BatchSize.Observe(float64(len(ids)))
	r.logJobs(ctx, relayed, streamIDs, c.failed, failedReasons)
	r.log.InfoContext(ctx, "Cycle complete: enqueued "+strconv.Itoa(len(relayed))+" jobs for review",
		slog.Int("num_enqueued", len(relayed)), slog.Int("num_failed", len(c.failed)),
		slog.Int("num_left_alone", len(c.leftAlone)), slog.Duration("duration", elapsed))
	return c, nil
}

// isolation is what an isolating cycle learns of its rows, step by step,
// in its transaction on conn.
type isolation struct {
	conn        *pgx.Conn
	now         time.Time            // the batch's enqueued_at
	publishable []db.Job             // the rows read whose entry fits
	pub         stream.PublishResult // their entries, index for index
	refused     map[int]bool         // indexes in publishable of the rows that refuse in_review
	bad         []rowFailure         // rows to mark failed
	alone       []leftAlone          // rows of bad that refuse even that
}

// leftAlone is a row that refuses to be marked failed.
type leftAlone struct {
	rowFailure
	err string // the database's error marking it failed
}

// load reads the claimed rows, setting aside those that fail to be read.
func (iso *isolation) load(ctx context.Context, ids []string) ([]db.Job, error) {
	jobs := make([]db.Job, 0, len(ids))
	err := bisect(ids, func(part []string) error {
		var err error
		jobs, err = db.LoadJobs(ctx, iso.conn, part, jobs)
		return err
	}, func(id string, err error) {
		iso.bad = append(iso.bad, rowFailure{id, "relay: cannot read job: " + pgText(err)})
	})
	return jobs, err
}

// publishIsolated publishes the jobs whose entry fits, setting aside the
// others. countRoom says whether they take room: they are new rows.
func (w *worker) publishIsolated(ctx context.Context, iso *isolation, jobs []db.Job, room *reservation, countRoom bool) error {
	r := w.r
	enqueuedAt := iso.now.Format(time.RFC3339Nano)
	publishable, failedIDs, failedErrs, size := r.splitOversized(jobs, enqueuedAt)
	for i := range failedIDs {
		iso.bad = append(iso.bad, rowFailure{failedIDs[i], failedErrs[i]})
	}
	iso.publishable = publishable
	if len(publishable) == 0 {
		return nil
	}
	pub, err := stream.Publish(ctx, r.rdb, &stream.PublishParams{
		Stream:     r.cfg.Stream,
		Partitions: r.cfg.Partitions,
		DedupTTL:   r.cfg.DedupTTL,
		EnqueuedAt: enqueuedAt,
		Jobs:       publishable,
		Forget:     w.committed,
	})
	if countRoom {
		room.published(len(publishable), size)
	}
	if err != nil {
		return err
	}
	iso.pub = pub
	w.committed = stream.DedupRecords{} // applied
	return nil
}

// markInReview marks the published rows in_review, setting aside the rows
// that refuse it.
func (iso *isolation) markInReview(ctx context.Context) error {
	iso.refused = map[int]bool{}
	idx := make([]int, len(iso.publishable))
	for i := range idx {
		idx[i] = i
	}
	return bisect(idx, func(part []int) error {
		p := db.InReviewParams{EnqueuedAt: iso.now, IDs: make([]string, len(part)),
			StreamIDs: make([]string, len(part)), Streams: make([]string, len(part))}
		for k, i := range part {
			p.IDs[k], p.StreamIDs[k], p.Streams[k] = iso.publishable[i].ID, iso.pub.StreamIDs[i], iso.pub.Streams[i]
		}
		return db.MarkInSavepoint(ctx, iso.conn, &p)
	}, func(i int, err error) {
		iso.refused[i] = true
		iso.bad = append(iso.bad, rowFailure{iso.publishable[i].ID, "relay: cannot mark job in_review: " + pgText(err)})
	})
}

// markFailed marks the bad rows failed, setting aside the rows that refuse
// even that.
func (iso *isolation) markFailed(ctx context.Context) error {
	return bisect(iso.bad, func(part []rowFailure) error {
		p := db.InReviewParams{FailedIDs: make([]string, len(part)), FailedErrors: make([]string, len(part))}
		for k, f := range part {
			p.FailedIDs[k], p.FailedErrors[k] = f.id, f.reason
		}
		return db.MarkInSavepoint(ctx, iso.conn, &p)
	}, func(f rowFailure, err error) {
		iso.alone = append(iso.alone, leftAlone{f, pgText(err)})
	})
}

// passOver has the relay pass over the rows left alone from now on, and
// logs those it did not already: before the COMMIT releases them, so that
// no other worker claims one meanwhile. (A claim that read the list just
// before can still take one; it isolates it again, once, and reports
// nothing new.) It returns which rows are new to the list.
func (r *Relay) passOver(ctx context.Context, alone []leftAlone) map[string]bool {
	ids := make([]string, len(alone))
	for i, f := range alone {
		ids[i] = f.id
	}
	fresh := r.leaveAlone(ids)
	for _, f := range alone {
		if fresh[f.id] {
			r.log.ErrorContext(ctx, "relay: job can be neither relayed nor marked failed; leaving it alone until the relay restarts",
				slog.String("job_id", f.id), slog.String("reason", f.reason), slog.String("err", f.err))
		}
	}
	return fresh
}

// afterIsolation keeps the dedup records of what was committed, deletes
// the entries of the rows that were not relayed after all, and fills in c.
// It returns what to log: the jobs relayed, their entries, and the reasons
// of c.failed.
func (w *worker) afterIsolation(ctx context.Context, iso *isolation, fresh map[string]bool, c *cycleResult) (relayed []db.Job, streamIDs, failedReasons []string) {
	r := w.r
	// The dedup records of the rows left alone stay: they are still
	// pending at this attempt, and a relay that claims one reuses its
	// entry.
	isAlone := make(map[string]bool, len(iso.alone))
	for _, f := range iso.alone {
		isAlone[f.id] = true
	}
	strays := map[string][]string{} // by stream
	var records stream.DedupRecords
	for i, job := range iso.publishable {
		if !isAlone[job.ID] && i < len(iso.pub.Records.Fields) {
			records.Fields = append(records.Fields, iso.pub.Records.Fields[i])
		}
		if iso.refused[i] || isAlone[job.ID] {
			strays[iso.pub.Streams[i]] = append(strays[iso.pub.Streams[i]], iso.pub.StreamIDs[i])
		} else {
			relayed = append(relayed, job)
			streamIDs = append(streamIDs, iso.pub.StreamIDs[i])
		}
	}
	// The batches' own records ("#" fields) go too, unless a row left alone
	// needs its record to expire with them.
	if len(iso.alone) == 0 && len(iso.pub.Records.Fields) > len(iso.publishable) {
		records.Fields = append(records.Fields, iso.pub.Records.Fields[len(iso.publishable):]...)
	}
	// Records not deleted by a publish (the cycle published nothing) stay
	// to forget as well.
	w.committed.Fields = append(slices.Clip(w.committed.Fields), records.Fields...)
	for name, ids := range strays {
		if err := r.rdb.XDel(ctx, name, ids...).Err(); err != nil {
			r.log.WarnContext(ctx, "relay: could not delete the stream entries of the jobs it failed; consumers will acknowledge them without a review",
				slog.String("stream", name), slog.Any("task_ids", ids), slog.String("err", err.Error()))
		}
	}
	for _, f := range iso.bad {
		if !isAlone[f.id] {
			c.failed = append(c.failed, f.id)
			failedReasons = append(failedReasons, f.reason)
		}
	}
	for _, f := range iso.alone {
		if fresh[f.id] {
			c.leftAlone = append(c.leftAlone, f.id)
		} else {
			c.claimed-- // counted by the cycle that left it alone first
		}
	}
	return relayed, streamIDs, failedReasons
}

// bisect calls try with items and, if that fails with a db.RowError, with
// each half, down to single items, which it hands to fail with their
// error. try must leave no trace when it fails (the db helpers roll back to
// their savepoint). It stops at the first error of another kind and
// returns it. One bad row among n costs about 3·log2(n) round trips.
func bisect[T any](items []T, try func([]T) error, fail func(T, error)) error {
	if len(items) == 0 {
		return nil
	}
	err := try(items)
	if err == nil || !db.IsRowError(err) {
		return err
	}
	if len(items) == 1 {
		fail(items[0], err)
		return nil
	}
	mid := len(items) / 2
	if err := bisect(items[:mid], try, fail); err != nil {
		return err
	}
	return bisect(items[mid:], try, fail)
}

// pgText is the database's own words for err, as last_error keeps them:
// "ERROR: <message> (SQLSTATE <code>)".
func pgText(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Error()
	}
	return err.Error()
}

// skipped lists the jobs the relay leaves alone; claims pass over them.
func (r *Relay) skipped() []string {
	r.skip.Lock()
	defer r.skip.Unlock()
	return r.skip.ids // only ever appended to: the caller's view stays valid
}

// leaveAlone adds jobs to those the relay leaves alone, and says which
// were not among them yet.
func (r *Relay) leaveAlone(ids []string) (fresh map[string]bool) {
	if len(ids) == 0 {
		return nil
	}
	r.skip.Lock()
	defer r.skip.Unlock()
	fresh = make(map[string]bool, len(ids))
	for _, id := range ids {
		if !slices.Contains(r.skip.ids, id) {
			r.skip.ids = append(r.skip.ids, id)
			fresh[id] = true
		}
	}
	r.m.JobsSkipped.Set(float64(len(r.skip.ids)))
	return fresh
}
