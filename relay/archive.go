package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jobrelay/jobrelay/db"
)

const (
	// ArchiveBatchSizeDefault is the most jobs one archiving statement
	// moves: a short transaction whose row locks go at once.
	ArchiveBatchSizeDefault = 1000

	// archiveIntervalDefault is the archiver's tick.
	archiveIntervalDefault = time.Minute

	// archiveBatchPause is the pause between two batches of one run, which
	// lets the other writers of the table in between.
	archiveBatchPause = 5 * time.Millisecond

	// archiveStatementTimeoutDefault bounds one archiving statement.
	archiveStatementTimeoutDefault = 30 * time.Second
)

// ArchiveParams says which jobs Archive moves to archived, and how.
type ArchiveParams struct {
	// OlderThan selects the jobs reviewed (by updated_at) more than this
	// long before Archive starts. Required: at least ArchiveAfterMin.
	OlderThan time.Duration
	// BatchSize is the most jobs one statement moves. Defaults to
	// ArchiveBatchSizeDefault.
	BatchSize int
	// StatementTimeout bounds each statement. Defaults to 30 seconds.
	StatementTimeout time.Duration
	// OnBatch, if not nil, is called after each batch with the number of
	// jobs it moved.
	OnBatch func(n int64)
}

// Archive moves the jobs reviewed more than p.OlderThan ago to archived, in
// batches of p.BatchSize, each one statement in a transaction of its own,
// oldest first, until a batch comes back short, and returns how many it
// moved. Rows other transactions hold are skipped, not waited for; any
// number of archivers may run at once. What was moved before an error
// stays moved.
func Archive(ctx context.Context, q db.DBTX, p *ArchiveParams) (int64, error) {
	if p.OlderThan < ArchiveAfterMin {
		return 0, fmt.Errorf("archive: OlderThan must be at least %s", ArchiveAfterMin)
	}
	batch := cmp.Or(p.BatchSize, ArchiveBatchSizeDefault)
	timeout := cmp.Or(p.StatementTimeout, archiveStatementTimeoutDefault)
	before := time.Now().Add(-p.OlderThan)
	var total int64
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		n, err := db.ArchiveReviewedBatch(sctx, q, before, batch)
		cancel()
		if err != nil {
			return total, err
		}
		total += n
		if p.OnBatch != nil && n > 0 {
			p.OnBatch(n)
		}
		if n < int64(batch) {
			return total, nil
		}
		pause.Reset(archiveBatchPause)
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-pause.C:
		}
	}
}

// archiveLoop runs the archiver at once, then every archiveInterval, until
// ctx is done: River's JobCleaner, moving jobs to archived instead of
// deleting them.
func (r *Relay) archiveLoop(ctx context.Context) {
	r.log.DebugContext(ctx, "relay: archiver started", slog.Duration("archive_after", r.cfg.ArchiveAfter))
	defer r.log.DebugContext(ctx, "relay: archiver stopped")
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.archiveOnce(ctx)
		tick.Reset(r.cfg.archiveInterval)
	}
}

// archiveOnce runs the archiver once, counting and logging what it did.
func (r *Relay) archiveOnce(ctx context.Context) {
	start := time.Now()
	n, err := Archive(ctx, r.pool, &ArchiveParams{
		OlderThan:        r.cfg.ArchiveAfter,
		BatchSize:        r.cfg.archiveBatchSize,
		StatementTimeout: r.cfg.CycleTimeout,
		OnBatch:          func(n int64) { r.m.JobsArchived.Add(float64(n)) },
	})
	if n > 0 {
		r.log.InfoContext(ctx, "relay: archived reviewed jobs", slog.Int64("num_archived", n),
			slog.Duration("archive_after", r.cfg.ArchiveAfter), slog.Duration("duration", time.Since(start)))
	}
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		r.m.Errors.WithLabelValues("archive").Inc()
		r.log.ErrorContext(ctx, "relay: archiver failed; retrying at its next tick", slog.String("err", err.Error()))
	}
}
