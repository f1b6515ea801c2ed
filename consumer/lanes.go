package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// discoverEvery is how often the root looks for streams of the pipeline
// that in_review jobs name but no lane reads: partitions of a layout
// before STREAM_PARTITIONS changed, or of relays not yet restarted with
// the new value.
const discoverEvery = 30 * time.Second

// discoverLoop starts a lane for every such stream, at start and every
// discoverEvery, so that their jobs are drained rather than left to wait.
// A lane runs until the consumer stops; one over a drained stream only
// blocks on it.
func (c *Consumer) discoverLoop(ctx context.Context, lanes *sync.WaitGroup) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		counts, err := db.CountInReviewByStream(qctx, c.pool)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				// PostgreSQL down: said by the steps that need it.
				c.log.DebugContext(ctx, "consumer: looking for retired partitions failed", slog.String("err", err.Error()))
			}
		}
		for name, n := range counts {
			if n == 0 || name == "" || !stream.IsPartition(c.base, name) {
				continue
			}
			if l := c.addLane(name); l != nil {
				c.log.InfoContext(ctx, "consumer: reading a stream of the pipeline that is not a partition any more, until it is drained",
					slog.String("stream", name), slog.Int64("num_in_review", n))
				lanes.Go(func() { l.runLane(ctx) })
			}
		}
		timer.Reset(backoff.Jitter(discoverEvery))
	}
}

// upgradeKeys moves the pipeline's helper keys from their names before the
// hash tag (see stream.UpgradeKeys). A failure (Redis down at start) is
// left to the relays' reaper, which tries until it succeeds: dead letters
// written meanwhile go to the new key and are merged with the old.
func (c *Consumer) upgradeKeys(ctx context.Context) {
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u, err := stream.UpgradeKeys(uctx, c.rdb, c.base, c.cfg.Group)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.WarnContext(ctx, "consumer: moving the stream's helper keys to their new names failed; the relay tries again",
			slog.String("err", err.Error()))
	case u.Any():
		c.log.InfoContext(ctx, "consumer: moved the stream's helper keys to their hash-tagged names",
			slog.String("dead_letters", stream.DeadLetterKey(c.base)), slog.Int64("num_dead_letters", u.DeadLetters),
			slog.Int64("num_dedup_records", u.DedupRecords), slog.Int64("num_retry_records", u.RetryRecords))
	}
}
