package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/metrics"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Batches of results: one UPDATE and one XACK each (see completeLoop).
const (
	minFinishBatch = 100
	maxFinishBatch = 1000
	finishLinger   = 10 * time.Millisecond
	// recorders is how many batches are recorded at once: while one waits
	// for its COMMIT, PostgreSQL works on the other.
	recorders = 2
	// resultsBuffer is the least room for results waiting for a recorder:
	// while both record a batch (a few milliseconds each), fast handlers
	// queue their results here instead of holding their slots.
	resultsBuffer = 4 * minFinishBatch
)

// completeLoop records results until the results channel closes; rec
// numbers the recorder, for Ready. A batch is recorded when it reaches
// minFinishBatch results or finishLinger after its first one, whichever
// comes first, with everything waiting by then: a commit per result would
// cost PostgreSQL more than the results themselves, and the linger delays
// only the bookkeeping, not the handlers (their slots are free already).
// One recorder collects at a time, while the other records its batch: two
// collecting at once would halve the batches a low rate makes.
func (c *Consumer) completeLoop(rec int) {
	batch := make([]*result, 0, maxFinishBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		c.collecting.Lock()
		r, ok := <-c.results
		if !ok {
			c.collecting.Unlock()
			return
		}
		batch = append(batch[:0], r)
		linger.Reset(finishLinger)
	collect:
		for len(batch) < maxFinishBatch {
			if len(batch) >= minFinishBatch {
				select { // take what is waiting, do not wait for more
				case r, ok := <-c.results:
					if !ok {
						break collect
					}
					batch = append(batch, r)
					continue
				default:
					break collect
				}
			}
			select {
			case r, ok := <-c.results:
				if !ok {
					break collect
				}
				batch = append(batch, r)
			case <-linger.C:
				break collect
			}
		}
		linger.Stop()
		c.collecting.Unlock()
		c.finish(rec, batch)
		c.maybeTrim()
	}
}

// finish records a batch of results (see record). It retries while
// PostgreSQL or Redis is down; during shutdown it gives up after a while,
// and the entries not acknowledged stay pending for another consumer.
func (c *Consumer) finish(rec int, batch []*result) {
	done := make([]string, len(batch))
	for i, r := range batch {
		done[i] = r.d.msg.ID
	}
	defer c.untrack(done...)
	c.startRecording(rec, len(batch))
	defer c.stopRecording(rec)

	// A stopping consumer still records what its handlers finished, until
	// its shutdown deadline or Abort.
	ctx := c.finishCtx
	if !c.record(ctx, rec, newPlan(batch, false)) {
		c.log.ErrorContext(ctx, "consumer: gave up recording results; their entries stay pending",
			slog.Int("num_results", len(batch)))
		return
	}
	var n [abandoned + 1]int
	for _, r := range batch {
		n[r.outcome]++
	}
	c.m.Jobs.WithLabelValues("reviewed").Add(float64(n[reviewed]))
	c.m.Jobs.WithLabelValues("retried").Add(float64(n[retried]))
	c.m.Jobs.WithLabelValues("dead_lettered").Add(float64(n[dead]))
	c.logResults(batch)
}

// plan is the recording of some results, in steps: the dead letters first
// (so nothing is lost if what follows fails), then the outcomes in the
// table, then the removal of dead letters a success made obsolete, then
// XACK — never XACK before the table says what happened. A step done is
// not done again when the plan is retried.
type plan struct {
	results []*result
	out     db.Outcomes
	dead    []*result
	ack     []string

	deadDone, outcomesDone bool
	undead                 []string // jobs whose dead letters are obsolete
}

// newPlan plans the recording of results; deadDone says their dead letters
// are written already.
func newPlan(results []*result, deadDone bool) *plan {
	p := &plan{results: results}
	for _, r := range results {
		d := r.d
		switch r.outcome {
		case reviewed:
			addFinished(&p.out.Reviewed, d, "")
			p.ack = append(p.ack, d.msg.ID)
		case retried:
			addFinished(&p.out.Retried, d, errorText(r.err))
		case dead:
			if !d.malformed { // a malformed entry names no job to mark
				addFinished(&p.out.Failed, d, errorText(r.err))
			}
			p.dead = append(p.dead, r)
			p.ack = append(p.ack, d.msg.ID)
		case skipped:
			p.ack = append(p.ack, d.msg.ID)
		case abandoned:
		}
	}
	p.deadDone = deadDone || len(p.dead) == 0
	return p
}

// record carries out p, retrying with backoff while a server fails. When
// the database refuses the outcomes because of the data of some row (see
// db.IsRowError), retrying would fail forever: the results are split
// instead, to record the others and isolate the one refused. It returns
// false if ctx ended first.
func (c *Consumer) record(ctx context.Context, rec int, p *plan) bool {
	r := c.retrier("recording results")
	r.Max = 5 * time.Second
	for {
		err := c.carryOut(ctx, p)
		if err == nil {
			r.OK(ctx)
			return true
		}
		c.m.Errors.WithLabelValues("finish").Inc()
		if p.deadDone && !p.outcomesDone && db.IsRowError(err) {
			return c.split(ctx, rec, p, err)
		}
		c.recordingFailed(rec, err)
		if !r.Failed(ctx, err) {
			return false
		}
	}
}

// split records the two halves of p's results one after the other, after
// the database refused them together because of one row (err): the half
// without that row is recorded, the half with it split again, down to the
// one result the database refuses, which isolate takes care of. A batch of
// n results with one such row costs about 2·log2(n) more statements.
func (c *Consumer) split(ctx context.Context, rec int, p *plan, err error) bool {
	if len(p.results) == 1 {
		return c.isolate(ctx, rec, p.results[0], err)
	}
	c.log.DebugContext(ctx, "consumer: the database refused a batch of results because of a row; splitting it",
		slog.Int("num_results", len(p.results)), slog.String("err", err.Error()))
	half := len(p.results) / 2
	return c.record(ctx, rec, newPlan(p.results[:half], true)) &&
		c.record(ctx, rec, newPlan(p.results[half:], true))
}

// isolate records a result whose outcome the database refuses (err), so
// that it stops blocking anything:
//   - a success: the job is failed and dead-lettered, with the database's
//     error in last_error, for someone to look at (and retry --failed);
//   - a dead letter whose job cannot be marked failed either: its entry,
//     dead-lettered already, is acknowledged so it stops circulating; the
//     row is left as it is (the relay's reaper publishes an in_review job
//     again after REENQUEUE_AFTER);
//   - a handler failure whose error cannot be recorded: the error is not
//     recorded, and the job is retried as any failed job.
func (c *Consumer) isolate(ctx context.Context, rec int, r *result, err error) bool {
	d := r.d
	attrs := []any{slog.String("job_id", d.job.ID), slog.String("task_id", d.msg.ID), slog.String("err", errorText(err))}
	switch r.outcome {
	case reviewed:
		c.log.ErrorContext(ctx, "consumer: the database refuses to mark the job reviewed; failing and dead-lettering it", attrs...)
		r.outcome, r.err = dead, fmt.Errorf("the handler succeeded, but the database refused to record it: %w", err)
		return c.record(ctx, rec, newPlan([]*result{r}, false))
	case dead:
		c.log.ErrorContext(ctx, "consumer: the job cannot be marked failed (the database refuses it); its entry is dead-lettered and acknowledged, its row left as it is", attrs...)
		return c.record(ctx, rec, &plan{results: []*result{r}, ack: []string{d.msg.ID}, deadDone: true, outcomesDone: true})
	default:
		c.log.WarnContext(ctx, "consumer: the database refuses to record the handler's error; the job will be retried", attrs...)
		return true
	}
}

// carryOut tries each step of p not yet done.
func (c *Consumer) carryOut(ctx context.Context, p *plan) error {
	if !p.deadDone {
		if err := c.deadLetter(ctx, p.dead); err != nil {
			return err
		}
		p.deadDone = true
	}
	if !p.outcomesDone {
		rec, err := db.RecordOutcomes(ctx, c.pool, &p.out)
		if err != nil {
			return err
		}
		p.outcomesDone, p.undead = true, rec.Undead
		c.countReviewed(p.results, rec.Unchanged)
		if len(rec.Unchanged) > 0 {
			c.log.WarnContext(ctx, "consumer: handled jobs were no longer waiting for a review (archived or deleted meanwhile); acknowledged",
				slog.Any("job_ids", rec.Unchanged))
		}
	}
	if len(p.undead) > 0 {
		n, err := stream.DeleteDeadLetters(ctx, c.rdb, c.cfg.Stream, p.undead)
		if err != nil {
			c.m.Errors.WithLabelValues("dead_letter").Inc()
			return err
		}
		c.log.InfoContext(ctx, "consumer: jobs dead-lettered meanwhile were reviewed after all; their dead letters removed",
			slog.Any("job_ids", p.undead), slog.Int64("num_removed", n))
		p.undead = nil
	}
	if len(p.ack) == 0 {
		return nil
	}
	err := c.rdb.XAck(ctx, c.cfg.Stream, c.cfg.Group, p.ack...).Err()
	if isNoGroup(err) {
		// The group, and with it these entries, is gone: nothing to
		// acknowledge. The reader recreates the group.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("acknowledge %d entries: %w", len(p.ack), err)
	}
	p.ack = nil
	return nil
}

func addFinished(f *db.Finished, d *delivery, errText string) {
	f.IDs = append(f.IDs, d.job.ID)
	f.Attempts = append(f.Attempts, int32(d.job.Attempt))
	if errText != "" {
		f.Errors = append(f.Errors, errText)
	}
}

// deadLetter copies entries to the dead-letter stream with their error,
// delivery count and original ID, in one round trip.
func (c *Consumer) deadLetter(ctx context.Context, list []*result) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	_, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, r := range list {
			values := make([]any, 0, 2*len(r.d.msg.Values)+10)
			for k, v := range r.d.msg.Values {
				values = append(values, k, v)
			}
			values = append(values,
				stream.FieldTaskID, r.d.msg.ID,
				stream.FieldError, errorText(r.err),
				stream.FieldDeliveries, r.d.deliveries,
				stream.FieldDeadAt, now,
				stream.FieldConsumer, c.cfg.Name)
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(c.cfg.Stream), Values: values})
		}
		return nil
	})
	if err != nil {
		c.m.Errors.WithLabelValues("dead_letter").Inc()
		return fmt.Errorf("dead-letter %d entries: %w", len(list), err)
	}
	return nil
}

// logResults logs each outcome but success at Info or above; successes at
// Debug (the handler logs its own work).
func (c *Consumer) logResults(batch []*result) {
	ctx := context.Background()
	for _, r := range batch {
		d := r.d
		switch r.outcome {
		case abandoned: // stays pending for another consumer: nothing happened to log
		case reviewed:
			if c.log.Enabled(ctx, slog.LevelDebug) {
				c.log.DebugContext(ctx, "consumer: job reviewed", slog.String("job_id", d.job.ID), slog.String("task_id", d.msg.ID))
			}
		case retried:
			c.log.WarnContext(ctx, "consumer: handler failed; the job will be retried",
				slog.String("job_id", d.job.ID), slog.String("task_id", d.msg.ID),
				slog.Int64("delivery", d.deliveries), slog.Int("max_deliveries", c.cfg.MaxDeliveries),
				slog.String("err", errorText(r.err)))
		case dead:
			c.log.ErrorContext(ctx, "consumer: job dead-lettered and marked failed",
				slog.String("job_id", d.job.ID), slog.String("task_id", d.msg.ID),
				slog.Int64("deliveries", d.deliveries), slog.String("dead_letter_stream", stream.DeadLetterKey(c.cfg.Stream)),
				slog.String("err", errorText(r.err)))
		case skipped:
			c.log.InfoContext(ctx, "consumer: redelivered entry needs no handling; acknowledged",
				slog.String("job_id", d.job.ID), slog.String("task_id", d.msg.ID), slog.String("reason", d.reason))
			c.m.Jobs.WithLabelValues("skipped").Inc()
		}
	}
}

// maybeTrim trims the stream if nobody in this consumer did in the last
// TrimInterval: recorders after results, and the housekeeping timer, so
// that a burst handled within moments is trimmed too.
func (c *Consumer) maybeTrim() {
	if c.cfg.TrimInterval <= 0 {
		return
	}
	last, now := c.trimmedAt.Load(), time.Now().UnixNano()
	if now-last < int64(c.cfg.TrimInterval) || !c.trimmedAt.CompareAndSwap(last, now) {
		return
	}
	c.trim()
}

// trim removes entries every group is done with. A refused trim (an ACL
// that forbids the script or XTRIM) is counted and logged at Error when
// trimming starts failing: the stream then grows until it works again.
func (c *Consumer) trim() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := stream.Trim(ctx, c.rdb, c.cfg.Stream)
	if err != nil {
		c.m.Errors.WithLabelValues("trim").Inc()
		c.trimLog.Failed(ctx, c.log, "consumer", err)
		return
	}
	c.trimLog.OK(ctx, c.log, "consumer")
	if n > 0 {
		c.m.Trimmed.Add(float64(n))
	}
}

// countReviewed counts the jobs of results marked reviewed, but those
// unchanged, by the priority and tenant their entries carry: one update of
// each counter per level in the batch.
func (c *Consumer) countReviewed(results []*result, unchanged []string) {
	type level struct {
		priority int
		tenant   string
	}
	var counts map[level]int
	for _, r := range results {
		if r.outcome != reviewed || slices.Contains(unchanged, r.d.job.ID) {
			continue
		}
		if counts == nil {
			counts = make(map[level]int, 1)
		}
		counts[level{r.d.job.Priority, r.d.job.Tenant}]++
	}
	for l, n := range counts {
		c.m.ReviewedByPriority.WithLabelValues(c.priorityLabels.Value(metrics.PriorityLabel(int16(l.priority)))).Add(float64(n))
		c.m.ReviewedByTenant.WithLabelValues(c.tenantLabels.Value(metrics.TenantLabel(l.tenant))).Add(float64(n))
	}
}
