package consumer

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Prefetch: while handlers are fast, the reader fetches more entries than
// it has idle handlers, so that one XREADGROUP feeds many handler calls
// instead of at most Concurrency: with a handler that takes microseconds,
// reading ReadCount entries per round trip would bound the consumer by
// Redis round trips, not by its handlers or by PostgreSQL.
//
// The entries fetched beyond the idle handlers are those the busy handlers
// will start within prefetchHorizon, judged by how long a handler has held
// its slot lately (slotHold), and never more than prefetchMax. They wait in
// the reader, in flight (their claim refreshed like a running handler's),
// until a handler is free. A handler that takes a second or more gets no
// prefetch at all: each consumer then fetches only for its idle handlers,
// and the entries it could not start soon stay in the stream for the other
// consumers.
const (
	prefetchMax     = 100
	prefetchHorizon = 5 * time.Millisecond
	// slotHoldWeight is the weight 1/slotHoldWeight of the latest hold in
	// the moving average.
	slotHoldWeight = 8
)

// prefetch is how many entries the reader may fetch beyond the idle
// handlers it holds: those the handlers will start within prefetchHorizon.
// None for a probe of the circuit breaker, nor before a handler has run.
func (c *Consumer) prefetch(probe bool) int {
	hold := c.slotHold.Load()
	if probe || hold <= 0 {
		return 0
	}
	return int(min(int64(c.cfg.Concurrency)*int64(prefetchHorizon)/hold, prefetchMax))
}

// observeHold adds how long a handler held its slot (from taking an entry
// to its result being queued) to the moving average prefetch reads.
func (c *Consumer) observeHold(d time.Duration) {
	v := max(int64(d), 1)
	old := c.slotHold.Load()
	if old > 0 {
		v = old + (v-old)/slotHoldWeight
	}
	c.slotHold.Store(max(v, 1))
}

// awaitSlot waits for a handler to free a slot for the first of rest,
// prefetched entries in flight meanwhile, and takes it. If none frees
// within prefetchWaitMax (the handlers turned slow since the fetch), or on
// Abort, it hands rest back (see handBack) and reports false.
func (c *Consumer) awaitSlot(rest []redis.XMessage) bool {
	select {
	case <-c.slots:
		return true
	default:
	}
	timer := time.NewTimer(prefetchWaitMax)
	defer timer.Stop()
	select {
	case <-c.slots:
		return true
	case <-timer.C:
	case <-c.abort:
	}
	c.handBack(rest)
	return false
}

// prefetchWaitMax is how long a prefetched entry may wait for a handler
// before it is handed back: far beyond prefetchHorizon, so that only
// handlers that turned slow make the consumer hand entries back.
const prefetchWaitMax = time.Second

// handBack gives up prefetched entries no handler can start soon: they stop
// being in flight here (no refresh keeps them), and their idle time is set
// to ReclaimIdle, so that the next reclaim pass of any consumer takes them
// over, as the work of a consumer that stopped. XCLAIM … JUSTID counts no
// delivery. If Redis cannot be told, they are taken over after ReclaimIdle
// all the same.
func (c *Consumer) handBack(msgs []redis.XMessage) {
	list := ids(msgs)
	c.untrack(list...)
	c.log.Info("consumer: handlers turned slow; handing prefetched entries back to the group",
		slog.Int("num_entries", len(list)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := []any{"XCLAIM", c.cfg.Stream, c.cfg.Group, c.cfg.Name, 0}
	for _, id := range list {
		args = append(args, id)
	}
	args = append(args, "IDLE", c.cfg.ReclaimIdle.Milliseconds(), "RETRYCOUNT", 0, "JUSTID")
	if err := c.rdb.Do(ctx, args...).Err(); err != nil {
		c.m.Errors.WithLabelValues("reclaim").Inc()
		c.log.Warn("consumer: handing prefetched entries back failed; others take them over after RECLAIM_IDLE",
			slog.String("err", err.Error()))
	}
}

// ids are the entries' IDs.
func ids(msgs []redis.XMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}
