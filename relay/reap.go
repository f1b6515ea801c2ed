package relay

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Bounds of one reaper run: it checks at most reapBatches × reapBatchSize
// jobs, then resumes where it stopped on the next poll tick, so a large
// in_review backlog costs a bounded amount of work per tick.
const (
	reapBatchSize = 100
	reapBatches   = 50
)

// reap finds in_review jobs published more than ReenqueueAfter ago whose
// stream entry no longer awaits a consumer — Redis restarted empty or
// failed over, the stream was deleted, the entry was trimmed or acknowledged
// while the job stayed in_review — and sends them back to pending_review.
// The update is a compare-and-set on status and stream_id, so replicas may
// reap at once, and a job finished meanwhile is left alone.
func (r *Relay) reap(ctx context.Context) error {
	if r.cfg.ReenqueueAfter < 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CycleTimeout)
	defer cancel()
	before := time.Now().Add(-r.cfg.ReenqueueAfter)
	var total int64
	for range reapBatches {
		jobs, err := db.PublishedBefore(ctx, r.pool, before, r.reapFrom, reapBatchSize)
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			r.reapFrom = db.Published{}
			break
		}
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.StreamID
		}
		live, err := stream.Live(ctx, r.rdb, r.cfg.Stream, r.cfg.Group, ids)
		if err != nil {
			return err
		}
		var lost []db.Published
		for i, j := range jobs {
			if !live[i] {
				lost = append(lost, j)
			}
		}
		if len(lost) > 0 {
			n, err := db.Reenqueue(ctx, r.pool, lost)
			if err != nil {
				return err
			}
			total += n
			for _, j := range lost {
				r.log.WarnContext(ctx, "relay: stream entry lost; job re-enqueued",
					slog.String("job_id", j.ID), slog.String("task_id", j.StreamID))
			}
		}
		r.reapFrom = jobs[len(jobs)-1]
		if len(jobs) < reapBatchSize {
			r.reapFrom = db.Published{}
			break
		}
	}
	if total > 0 {
		r.cfg.Metrics.JobsReaped.Add(float64(total))
		r.log.InfoContext(ctx, "relay: reaper re-enqueued jobs whose stream entry was lost", slog.Int64("num_reenqueued", total))
	}
	return nil
}
