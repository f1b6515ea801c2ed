package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Batches of results: one UPDATE and one XACK each (see completeLoop).
const (
	minFinishBatch = 100
	maxFinishBatch = 1000
	finishLinger   = 2 * time.Millisecond
	// recorders is how many batches are recorded at once: while one waits
	// for its COMMIT, PostgreSQL works on the other.
	recorders = 2
)

// completeLoop records results until the results channel closes. A batch
// is recorded when it reaches minFinishBatch results or finishLinger after
// its first one, whichever comes first, with everything waiting by then: a
// commit per result would cost PostgreSQL more than the results themselves,
// and the linger delays only the bookkeeping, not the handlers.
func (c *Consumer) completeLoop() {
	batch := make([]*result, 0, maxFinishBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for r := range c.results {
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
		c.finish(batch)
		c.maybeTrim()
	}
}

// finish records a batch of results: dead letters first (so nothing is lost
// if what follows fails), then the outcomes in the table, then XACK — never
// XACK before the table says what happened. It retries while PostgreSQL or
// Redis is down; during shutdown it gives up after a while, and the entries
// not acknowledged stay pending for another consumer.
func (c *Consumer) finish(batch []*result) {
	var (
		out      db.Outcomes
		ack      []string
		deadList []*result
		done     []string
	)
	for _, r := range batch {
		d := r.d
		done = append(done, d.msg.ID)
		switch r.outcome {
		case reviewed:
			addFinished(&out.Reviewed, d, "")
			ack = append(ack, d.msg.ID)
		case retried:
			addFinished(&out.Retried, d, errorText(r.err))
		case dead:
			if !d.malformed { // a malformed entry names no job to mark
				addFinished(&out.Failed, d, errorText(r.err))
			}
			deadList = append(deadList, r)
			ack = append(ack, d.msg.ID)
		case skipped:
			ack = append(ack, d.msg.ID)
		case abandoned:
		}
	}
	defer c.untrack(done...)

	// A stopping consumer still records what its handlers finished, until
	// its shutdown deadline or Abort.
	ctx := c.finishCtx
	r := c.retrier("recording results")
	r.Max = 5 * time.Second
	deadDone := len(deadList) == 0
	for {
		err := c.finishOnce(ctx, &out, ack, deadList, &deadDone)
		if err == nil {
			r.OK(ctx)
			break
		}
		c.m.Errors.WithLabelValues("finish").Inc()
		if !r.Failed(ctx, err) {
			c.log.ErrorContext(ctx, "consumer: gave up recording results; their entries stay pending",
				slog.Int("num_results", len(batch)))
			return
		}
	}

	c.m.Jobs.WithLabelValues("reviewed").Add(float64(len(out.Reviewed.IDs)))
	c.m.Jobs.WithLabelValues("retried").Add(float64(len(out.Retried.IDs)))
	c.m.Jobs.WithLabelValues("dead_lettered").Add(float64(len(deadList)))
	c.logResults(batch)
}

// finishOnce tries each step not yet done.
func (c *Consumer) finishOnce(ctx context.Context, out *db.Outcomes, ack []string, deadList []*result, deadDone *bool) error {
	if !*deadDone {
		if err := c.deadLetter(ctx, deadList); err != nil {
			return err
		}
		*deadDone = true
	}
	unchanged, err := db.RecordOutcomes(ctx, c.pool, out)
	if err != nil {
		return err
	}
	if len(unchanged) > 0 {
		c.log.WarnContext(ctx, "consumer: handled jobs were no longer waiting for this result (reviewed, failed or published again meanwhile); acknowledged",
			slog.Any("job_ids", unchanged))
	}
	if len(ack) == 0 {
		return nil
	}
	err = c.rdb.XAck(ctx, c.cfg.Stream, c.cfg.Group, ack...).Err()
	if isNoGroup(err) {
		// The group, and with it these entries, is gone: nothing to
		// acknowledge. The reader recreates the group.
		return nil
	}
	if err != nil {
		return fmt.Errorf("acknowledge %d entries: %w", len(ack), err)
	}
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
				slog.String("job_id", d.job.ID), slog.String("task_id", d.msg.ID), slog.String("reason", d.skip))
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
