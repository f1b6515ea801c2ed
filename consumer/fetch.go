package consumer

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// ensureGroup creates the group from the start of the stream (so entries
// added before any consumer existed are delivered), and the stream if
// missing. A group that exists already is fine.
func (c *Consumer) ensureGroup(ctx context.Context) (created bool, err error) {
	err = c.rdb.XGroupCreateMkStream(ctx, c.cfg.Stream, c.cfg.Group, "0").Err()
	if redis.HasErrorPrefix(err, "BUSYGROUP") {
		return false, nil
	}
	if err != nil {
		c.m.Errors.WithLabelValues("group").Inc()
		return false, err
	}
	return true, nil
}

// ensureGroupRetrying ensures the group, retrying while Redis is down. It
// returns false if ctx ends first.
func (c *Consumer) ensureGroupRetrying(ctx context.Context) bool {
	r := c.retrier("creating the consumer group")
	for {
		created, err := c.ensureGroup(ctx)
		if err == nil {
			r.OK(ctx)
			if created {
				c.log.InfoContext(ctx, "consumer: created consumer group", slog.String("group", c.cfg.Group))
				c.verifyEntriesUpTo(ctx)
			}
			return true
		}
		if ctx.Err() != nil || !r.Failed(ctx, err) {
			return false
		}
	}
}

// isNoGroup tells a lost group (Redis restarted empty, FLUSHALL, the stream
// deleted) from other errors.
func isNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

// recoverGroup recreates a lost group, and says so.
func (c *Consumer) recoverGroup(ctx context.Context) {
	c.log.WarnContext(ctx, "consumer: consumer group missing (Redis restarted empty, flushed, or the stream was deleted); recreating it",
		slog.String("group", c.cfg.Group))
	c.verifyEntriesBefore()
	c.ensureGroupRetrying(ctx)
}

// verifyMargin covers the difference between this host's clock and the
// Redis server's, which stamps entry IDs.
const verifyMargin = time.Minute

// verifyEntriesBefore makes the status of every job whose entry was added
// before now (and verifyMargin more) checked before its first delivery. A
// group created or recreated while the stream already held entries (an
// operator's XGROUP DESTROY, a stream that outlived its group) reads them
// from the start: their jobs may be long reviewed, and the handler must
// not run again for them.
func (c *Consumer) verifyEntriesBefore() {
	c.verifyBefore.Store(time.Now().Add(verifyMargin).UnixMilli())
}

// needsCheck says whether a new entry's job may be finished already: a
// later attempt's (a late success of an earlier one may have reviewed it),
// or one added before the group was (re)created.
func (c *Consumer) needsCheck(msg redis.XMessage) bool {
	if a, _ := msg.Values[stream.FieldAttempt].(string); a != "1" {
		return true
	}
	id, ok := stream.ParseID(msg.ID)
	return !ok || int64(id.MS) < c.verifyBefore.Load()
}

// readLoop reads new entries for idle handlers, and a bounded prefetch
// while handlers are fast (see prefetch), until ctx is done.
func (c *Consumer) readLoop(ctx context.Context) {
	r := c.retrier("reading the stream")
	for {
		n, probe := c.fetchSlots(ctx, c.cfg.ReadCount, true)
		if n == 0 {
			return
		}
		res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    c.cfg.Group,
			Consumer: c.cfg.Name,
			Streams:  []string{c.cfg.Stream, ">"},
			Count:    int64(n + c.prefetch(probe)),
			Block:    c.cfg.Block,
		}).Result()
		if err != nil {
			c.release(n)
			c.probeFetched(probe, true, nil)
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, redis.Nil): // nothing new within Block
				r.OK(ctx)
			case isNoGroup(err):
				c.recoverGroup(ctx)
			default:
				c.m.Errors.WithLabelValues("read").Inc()
				if !r.Failed(ctx, err) {
					return
				}
			}
			continue
		}
		r.OK(ctx)
		var msgs []redis.XMessage
		if len(res) > 0 {
			msgs = res[0].Messages
		}
		c.release(max(n-len(msgs), 0))
		for _, msg := range msgs[min(n, len(msgs)):] {
			c.track(msg.ID) // prefetched: in flight until a handler takes it
		}
		if probe {
			var ids []string
			for _, msg := range msgs {
				ids = append(ids, msg.ID)
			}
			c.probeFetched(probe, true, ids)
		}
		ds, ok := c.firstDeliveries(ctx, msgs, min(n, len(msgs)))
		if !ok {
			continue // stopping
		}
		for i, d := range ds {
			// Prefetched: in flight until a handler is free to take it.
			if i >= n && !c.awaitSlot(msgs[i:]) {
				break
			}
			c.dispatch(d)
		}
	}
}

// firstDeliveries makes deliveries of entries read for the first time, the
// first held of them with a slot each. A first attempt's entry added since
// the group was created was never delivered before, so its job cannot be
// finished already; the others (needsCheck) are settled against the table,
// all of them in one query, prefetched ones included: one query per entry
// made draining a backlog read by a group created after it several times
// slower. It returns false, with the slots released and nothing in flight,
// when the consumer stops before the table answers.
func (c *Consumer) firstDeliveries(ctx context.Context, msgs []redis.XMessage, held int) ([]*delivery, bool) {
	ds := make([]*delivery, len(msgs))
	var check []*delivery
	for i, msg := range msgs {
		ds[i] = newDelivery(msg, 1)
		if c.needsCheck(msg) {
			c.track(msg.ID) // refreshed while we wait for the database
			check = append(check, ds[i])
		}
	}
	if len(check) > 0 && !c.settleAll(ctx, check) {
		c.untrack(ids(msgs)...)
		c.release(held)
		return nil, false
	}
	return ds, true
}

// reclaimLoop takes over entries left idle for ReclaimIdle whose retry is
// due — failed jobs once their backoff has passed, and at once the work of
// dead consumers — whenever handlers are idle.
func (c *Consumer) reclaimLoop(ctx context.Context) {
	interval := max(c.cfg.ReclaimIdle/2, 10*time.Millisecond)
	timer := time.NewTimer(interval / 4) // soon after start: a restart should pick up what it left
	defer timer.Stop()
	cursor := "0-0"
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cursor = c.reclaim(ctx, cursor)
		timer.Reset(backoff.Jitter(interval))
	}
}

// reclaim runs one reclaim pass from cursor and returns where to resume.
func (c *Consumer) reclaim(ctx context.Context, cursor string) string {
	for ctx.Err() == nil {
		// Wait for an idle handler: the reader holds the idle ones while it
		// blocks for new entries, and gives them back within Block.
		n, probe := c.fetchSlots(ctx, 100, false)
		if n == 0 {
			return cursor
		}
		res, err := stream.Reclaim(ctx, c.rdb, &stream.ReclaimParams{Stream: c.cfg.Stream, Group: c.cfg.Group,
			Consumer: c.cfg.Name, MinIdle: c.cfg.ReclaimIdle, Cursor: cursor, Count: n})
		if err != nil {
			c.release(n)
			c.probeFetched(probe, false, nil)
			switch {
			case ctx.Err() != nil:
			case isNoGroup(err):
				c.recoverGroup(ctx)
			default:
				c.m.Errors.WithLabelValues("reclaim").Inc()
				c.log.Log(ctx, c.gate.Level(slog.LevelWarn), "consumer: reclaiming idle entries failed", slog.String("err", err.Error()))
			}
			return "0-0"
		}
		c.release(n - len(res.Claimed))
		if probe {
			var ids []string
			for _, cl := range res.Claimed {
				ids = append(ids, cl.Message.ID)
			}
			c.probeFetched(probe, false, ids)
		}
		for _, id := range res.Deleted {
			c.log.WarnContext(ctx, "consumer: a pending entry no longer exists in the stream; the relay's reaper will re-enqueue its job",
				slog.String("task_id", id))
		}
		if len(res.Claimed) > 0 {
			c.m.Reclaimed.Add(float64(len(res.Claimed)))
			c.log.InfoContext(ctx, "consumer: reclaimed idle entries", slog.Int("num_reclaimed", len(res.Claimed)))
			c.dispatchRedeliveries(ctx, res.Claimed)
		}
		cursor = res.Next
		if cursor == "0-0" || cursor == "" {
			return "0-0"
		}
	}
	return cursor
}

// dispatchRedeliveries settles entries delivered before: a job already
// reviewed (or failed, archived, deleted, or published again since) is
// acknowledged without calling the handler; an entry delivered more than
// MaxDeliveries times without a result (its consumers kept dying) is
// dead-lettered; the others go to handlers. A slot is held for each.
func (c *Consumer) dispatchRedeliveries(ctx context.Context, claimed []stream.Claimed) {
	ds := make([]*delivery, len(claimed))
	for i, cl := range claimed {
		ds[i] = newDelivery(cl.Message, cl.Deliveries)
		ds[i].retry = cl.Retry
		c.track(ds[i].msg.ID) // refreshed while we wait for the database
	}
	if !c.settleAll(ctx, ds) {
		// Stopping: leave them pending for whoever comes next.
		for _, d := range ds {
			c.untrack(d.msg.ID)
		}
		c.release(len(ds))
		return
	}
	for _, d := range ds {
		c.dispatch(d)
	}
}

// settleAll settles deliveries against their jobs' states (see settle),
// read in one query. It returns false if the consumer stops before the
// table answers.
func (c *Consumer) settleAll(ctx context.Context, ds []*delivery) bool {
	var ids []string
	for _, d := range ds {
		if !d.malformed {
			ids = append(ids, d.job.ID)
		}
	}
	var states map[string]db.JobState
	r := c.retrier("reading job statuses")
	for len(ids) > 0 {
		// Entries already read are handled, even when the consumer is
		// stopping meanwhile (their handlers run under the work context):
		// the first read gets a few seconds of its own.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		var err error
		states, err = db.JobStatuses(sctx, c.pool, ids)
		cancel()
		if err == nil {
			r.OK(ctx)
			break
		}
		if ctx.Err() != nil || !r.Failed(ctx, err) {
			return false
		}
	}
	for _, d := range ds {
		if !d.malformed {
			settle(d, states, c.cfg.MaxDeliveries)
		}
	}
	return true
}

// settle decides what a redelivered entry needs, from its job's state.
func settle(d *delivery, states map[string]db.JobState, maxDeliveries int) {
	st, ok := states[d.job.ID]
	switch {
	case !ok:
		d.settle(settledAck, "job no longer exists")
	case st.Status == db.StatusReviewed:
		d.settle(settledAck, "job already reviewed")
	case st.Status == db.StatusInReview && st.Attempts != int32(d.job.Attempt):
		d.settle(settledAck, "job was published again since (attempt "+strconv.Itoa(int(st.Attempts))+")")
	case st.Status != db.StatusInReview && st.Status != db.StatusPendingReview:
		d.settle(settledAck, "job is "+st.Status)
	case d.deliveries > int64(maxDeliveries):
		d.settle(settledDeadLetter, "delivered "+strconv.Itoa(int(d.deliveries))+" times without a result (the consumers handling it stopped or crashed)")
	}
}

// notRefreshed marks an entry in flight whose claim another consumer took:
// later than any cutoff, so refreshLoop leaves it alone.
var notRefreshed = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// refreshLoop keeps this consumer's claim on entries whose handler runs
// long, so no other consumer reclaims them meanwhile: every ReclaimIdle/4
// it resets the idle time of the entries it has held (or last refreshed)
// for that long, so none stays idle for more than about half of
// ReclaimIdle.
func (c *Consumer) refreshLoop(ctx context.Context) {
	every := max(c.cfg.ReclaimIdle/4, 2*time.Millisecond)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	var bo backoff.Backoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cutoff := time.Now().Add(-every)
		var ids []string
		c.mu.Lock()
		for id, t := range c.inflight {
			if t.Before(cutoff) {
				ids = append(ids, id)
			}
		}
		c.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		owned, err := stream.Refresh(ctx, c.rdb, c.member(), ids)
		if err != nil {
			if ctx.Err() == nil {
				c.m.Errors.WithLabelValues("refresh").Inc()
				c.log.Log(ctx, c.gate.Level(slog.LevelWarn), "consumer: refreshing claims failed", slog.String("err", err.Error()))
				backoff.Sleep(ctx, bo.Next())
			}
			continue
		}
		bo.Reset()
		now := time.Now()
		kept := make(map[string]bool, len(owned))
		for _, id := range owned {
			kept[id] = true
		}
		var lost []string
		c.mu.Lock()
		for _, id := range ids {
			if _, ok := c.inflight[id]; !ok {
				continue // finished meanwhile
			}
			if kept[id] {
				c.inflight[id] = now
			} else {
				// Not ours to refresh any more: left out of the next rounds.
				c.inflight[id] = notRefreshed
				lost = append(lost, id)
			}
		}
		c.mu.Unlock()
		if len(lost) > 0 {
			// Most often the aftermath of an outage that kept this consumer
			// from refreshing its claims, which the gate has reported.
			c.log.Log(ctx, c.gate.Level(slog.LevelWarn), "consumer: lost the claim on entries still being handled (another consumer took them over)",
				slog.Int("num_lost", len(lost)), slog.Any("task_ids", lost[:min(len(lost), 10)]))
		}
	}
}

// housekeepingLoop removes consumers that left the group long ago with
// nothing pending, so XINFO CONSUMERS stays readable, and trims the stream
// every TrimInterval that no result did.
func (c *Consumer) housekeepingLoop(ctx context.Context) {
	var idle, trim <-chan time.Time
	every := max(c.cfg.DeleteConsumersAfter/4, time.Second)
	timer := time.NewTimer(every/2 + rand.N(every/2))
	defer timer.Stop()
	if c.cfg.DeleteConsumersAfter >= 0 {
		idle = timer.C
	}
	if c.cfg.TrimInterval > 0 {
		ticker := time.NewTicker(backoff.Jitter(c.cfg.TrimInterval))
		defer ticker.Stop()
		trim = ticker.C
	}
	if idle == nil && trim == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim:
			c.maybeTrim()
			continue
		case <-idle:
		}
		names, err := stream.DeleteIdleConsumers(ctx, c.rdb, c.member(), c.cfg.DeleteConsumersAfter)
		switch {
		case err != nil && ctx.Err() == nil && !isNoGroup(err):
			c.m.Errors.WithLabelValues("group").Inc()
			c.log.Log(ctx, c.gate.Level(slog.LevelWarn), "consumer: removing idle consumers failed", slog.String("err", err.Error()))
		case len(names) > 0:
			c.log.InfoContext(ctx, "consumer: removed idle consumers with nothing pending", slog.Any("consumers", names))
		}
		timer.Reset(every)
	}
}

// member names this consumer in its group.
func (c *Consumer) member() stream.Member {
	return stream.Member{Stream: c.cfg.Stream, Group: c.cfg.Group, Consumer: c.cfg.Name}
}
