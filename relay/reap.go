package relay

import (
	"context"
	"log/slog"
	"slices"
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

	// reapLogExamples is the most job IDs the reaper's log line lists.
	reapLogExamples = 10
)

// reap sends back to pending_review the in_review jobs of this relay's
// stream that no consumer will finish:
//
//   - jobs published more than ReenqueueAfter ago whose stream entry no
//     longer awaits a consumer — Redis restarted empty or failed over, the
//     stream was deleted, the entry was trimmed or acknowledged while the
//     job stayed in_review;
//   - jobs in_review without an entry recorded (the old poller's leftovers,
//     rows the application inserted as in_review, rows whose bookkeeping a
//     migrate down and up reset), once their updated_at is ReenqueueAfter
//     old: they have no entry to wait for.
//
// With partitions, every partition is reaped, and so is every stream of
// this pipeline's that in_review jobs still name although it is no longer
// a partition (STREAM_PARTITIONS changed): "<Stream>" or "<Stream>:<k>".
// Rows without a stream recorded (published before migration 00004, to
// the single stream of the time) are checked against Stream itself.
//
// Jobs recorded as published to another stream (another deployment on the
// same database) are left to that deployment's reaper. The update is a
// compare-and-set on status and stream_id, so replicas may reap at once, and
// a job finished meanwhile is left alone: only the jobs it changed are
// counted and logged, in one line per run.
func (r *Relay) reap(ctx context.Context) error {
	if r.cfg.ReenqueueAfter < 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CycleTimeout)
	defer cancel()
	r.upgradeKeys(ctx)
	streams, err := r.streams(ctx)
	if err != nil {
		return err
	}
	var run reapRun
	// Whatever stopped the run, log what it did.
	defer func() {
		r.logReaped(ctx, run.found, run.untracked, len(run.changed), run.examples)
	}()
	budget := reapBatches
	for _, s := range streams {
		if err := r.reapStream(ctx, s, &run, &budget); err != nil {
			return err
		}
	}
	return nil
}

// reapRun is what a reaper run found and did.
type reapRun struct {
	found, untracked int
	changed          []string
	examples         []string
}

// streams lists the streams the reaper looks after: the partitions, and
// the pipeline's streams that in_review jobs name besides.
func (r *Relay) streams(ctx context.Context) ([]string, error) {
	streams := stream.Partitions(r.cfg.Stream, r.cfg.Partitions)
	counts, err := db.CountInReviewByStream(ctx, r.pool)
	if err != nil {
		return nil, err
	}
	return withRetired(r.cfg.Stream, streams, counts), nil
}

// withRetired adds to the current partitions the base stream (for rows
// without a stream recorded) and every stream of base's that counts names.
func withRetired(base string, current []string, counts map[string]int64) []string {
	out := slices.Clone(current)
	if !slices.Contains(out, base) {
		out = append(out, base)
	}
	var extra []string
	for name := range counts {
		if name != "" && stream.IsPartition(base, name) && !slices.Contains(out, name) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// reapStream reaps the in_review jobs of one stream, in at most budget
// pages, and resumes where the last run stopped.
func (r *Relay) reapStream(ctx context.Context, name string, run *reapRun, budget *int) error {
	if r.reapFrom == nil {
		r.reapFrom = map[string]db.InReviewJob{}
	}
	params := db.PublishedBeforeParams{
		Before:        time.Now().Add(-r.cfg.ReenqueueAfter),
		Stream:        name,
		WithoutStream: name != r.cfg.Stream,
		After:         r.reapFrom[name],
		Limit:         reapBatchSize,
	}
	for ; *budget > 0; *budget-- {
		jobs, err := db.PublishedBefore(ctx, r.pool, &params)
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			delete(r.reapFrom, name)
			return nil
		}
		lost, nUntracked, err := r.lost(ctx, name, jobs)
		run.untracked += nUntracked
		if err != nil {
			return err
		}
		lost = r.withoutRefused(lost)
		if len(lost) > 0 {
			run.found += len(lost)
			n, err := r.reenqueue(ctx, lost)
			if err != nil {
				return err
			}
			run.changed = append(run.changed, n...)
			r.m.JobsReaped.Add(float64(len(n)))
			for _, id := range n {
				if len(run.examples) < reapLogExamples {
					run.examples = append(run.examples, id)
				}
			}
		}
		params.After = jobs[len(jobs)-1]
		r.reapFrom[name] = params.After
		if len(jobs) < reapBatchSize {
			delete(r.reapFrom, name)
			return nil
		}
	}
	return nil
}

// upgradeKeys moves the stream's helper keys from their names before the
// hash tag (see stream.UpgradeKeys), once per process; a failure is tried
// again at the next reaper run.
func (r *Relay) upgradeKeys(ctx context.Context) {
	if r.upgraded {
		return
	}
	u, err := stream.UpgradeKeys(ctx, r.rdb, r.cfg.Stream, r.cfg.Group)
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "relay: moving the stream's helper keys to their new names failed; trying again later",
				slog.String("err", err.Error()))
		}
		return
	}
	r.upgraded = true
	if u.Any() {
		r.log.InfoContext(ctx, "relay: moved the stream's helper keys to their hash-tagged names",
			slog.String("dead_letters", stream.DeadLetterKey(r.cfg.Stream)), slog.Int64("num_dead_letters", u.DeadLetters),
			slog.Int64("num_dedup_records", u.DedupRecords), slog.Int64("num_retry_records", u.RetryRecords))
	}
}

// lost returns the jobs whose entry is lost, of a page of in_review jobs of
// stream name: those with no entry recorded (untracked of them), and those
// whose entry the stream no longer holds.
func (r *Relay) lost(ctx context.Context, name string, jobs []db.InReviewJob) (lost []db.InReviewJob, untracked int, err error) {
	var ids []string
	var tracked []db.InReviewJob
	for _, j := range jobs {
		if j.StreamID == "" {
			lost = append(lost, j)
			untracked++
			continue
		}
		ids = append(ids, j.StreamID)
		tracked = append(tracked, j)
	}
	if len(ids) == 0 {
		return lost, untracked, nil
	}
	live, err := stream.Live(ctx, r.rdb, name, r.cfg.Group, ids)
	if err != nil {
		return nil, untracked, err
	}
	for i, j := range tracked {
		if !live[i] {
			lost = append(lost, j)
		}
	}
	return lost, untracked, nil
}

// logReaped logs a reaper run in one line, if it found anything: at Warn
// when it re-enqueued jobs (entries were lost, or rows had none), at Debug
// when every job it found had moved on before its update.
func (r *Relay) logReaped(ctx context.Context, found, untracked, reenqueued int, examples []string) {
	if found == 0 {
		return
	}
	attrs := []slog.Attr{
		slog.Int("num_found", found),
		slog.Int("num_untracked", untracked),
		slog.Int("num_reenqueued", reenqueued),
	}
	if reenqueued == 0 {
		r.log.LogAttrs(ctx, slog.LevelDebug, "relay: reaper found jobs without a live stream entry; none needed re-enqueueing", attrs...)
		return
	}
	attrs = append(attrs, slog.Any("job_ids", examples))
	r.log.LogAttrs(ctx, slog.LevelWarn, "relay: reaper re-enqueued jobs whose stream entry was lost or never recorded", attrs...)
}

// reenqueue sends lost jobs back to pending_review and returns the IDs it
// changed. A row the database refuses to send back (a trigger or
// constraint the application added, a last_error column too narrow for
// the reaper's text) must not keep every other lost job in_review: the
// batch is split in halves down to the rows that fail, which are left
// in_review, reported once each at Error, and passed over by this
// process's reaper from then on (status --check reports in_review jobs
// that stay too long).
func (r *Relay) reenqueue(ctx context.Context, lost []db.InReviewJob) ([]string, error) {
	var changed []string
	err := bisect(lost, func(part []db.InReviewJob) error {
		n, err := db.Reenqueue(ctx, r.pool, part)
		changed = append(changed, n...)
		return err
	}, func(j db.InReviewJob, err error) {
		r.reapRefused.Lock()
		if r.reapRefused.ids == nil {
			r.reapRefused.ids = map[string]bool{}
		}
		r.reapRefused.ids[j.ID] = true
		r.reapRefused.Unlock()
		r.m.Errors.WithLabelValues("reap").Inc()
		r.log.ErrorContext(ctx, "relay: the database refuses to send a lost job back to pending_review; the reaper leaves it in_review",
			slog.String("job_id", j.ID), slog.String("task_id", j.StreamID), slog.String("err", pgText(err)))
	})
	return changed, err
}

// withoutRefused drops the jobs the reaper was refused before.
func (r *Relay) withoutRefused(jobs []db.InReviewJob) []db.InReviewJob {
	r.reapRefused.Lock()
	defer r.reapRefused.Unlock()
	if len(r.reapRefused.ids) == 0 {
		return jobs
	}
	out := jobs[:0:0]
	for _, j := range jobs {
		if !r.reapRefused.ids[j.ID] {
			out = append(out, j)
		}
	}
	return out
}
