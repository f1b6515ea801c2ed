package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// The retry policy (see the package doc).
const (
	// RetryBackoffMax caps the wait before retrying a failed delivery:
	// ReclaimIdle doubled per failure of the entry, up to this (or
	// ReclaimIdle, if longer).
	RetryBackoffMax = 30 * time.Minute

	// transientPerDelivery is how many transient failures, while the
	// review service otherwise answers, count as one delivery toward
	// MaxDeliveries.
	transientPerDelivery = 3

	// breakerThreshold is how many distinct entries must fail transiently
	// in a row, with no answer from the review service in between, for
	// the consumer to consider it down. Distinct entries, so that one job
	// whose handling keeps timing out is not taken for an outage.
	breakerThreshold = 5
)

// TransientError marks a failure that says nothing about the job: the
// review service (or what the handler needs to reach it) is down,
// overloaded or slow. A transient failure is retried like any other, but
// counts toward MaxDeliveries only once in transientPerDelivery times, and
// not at all while the review service looks down (see the package doc).
// Handlers return one with Transient.
type TransientError struct {
	Err error
}

// Error returns the wrapped error's message.
func (e *TransientError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as transient (see TransientError). It returns nil
// for nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether a handler error is transient: marked with
// Transient, or, whatever the handler, one that only the infrastructure
// causes: a timeout (a context deadline, a net.Error that says so), a
// connection refused, reset or aborted, an unreachable host or network, or
// a failed DNS lookup. Any other error is the handler's verdict on the
// job.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var te *TransientError
	var ne net.Error
	var dns *net.DNSError
	switch {
	case errors.As(err, &te), errors.As(err, &dns):
		return true
	case errors.As(err, &ne) && ne.Timeout(): // context.DeadlineExceeded too
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// retryDelay is how long an entry that has failed failures times waits
// before its next delivery: ReclaimIdle doubled per failure after the
// first, capped at RetryBackoffMax, ±10%. Reclaim never takes an entry
// idle for less than ReclaimIdle, whatever the delay.
func (c *Consumer) retryDelay(failures int) time.Duration {
	limit := max(RetryBackoffMax, c.cfg.ReclaimIdle)
	d := c.cfg.ReclaimIdle
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return backoff.Jitter(min(d, limit))
}

// failed decides what happens to a delivery whose handler returned err: a
// retry after a backoff, or the dead-letter stream once the failures that
// count reach MaxDeliveries. It notes the failure for the next delivery
// (see stream.RecordFailure), and takes back the delivery count of a
// transient failure that does not count.
//
//   - A failure the handler reports about the job counts, and the entry
//     backs off: ReclaimIdle doubled per failure (retryDelay).
//   - A transient failure while the review service answers for other jobs
//     backs off the same way, and one in transientPerDelivery counts.
//   - A transient failure while the service looks down (the breaker is
//     open) does not count, and the entry waits only ReclaimIdle: the
//     breaker spaces the tries, and once the service is back every job is
//     due soon.
func (c *Consumer) failed(d *delivery, err error) *result {
	rec := d.retry
	counted, outage, why := true, false, ""
	switch {
	case !IsTransient(err):
		c.breakerAnswered(d.msg.ID) // the handler's verdict on the job: the service is up
	case c.breakerFailed(d.msg.ID, err):
		c.m.TransientFailures.Inc()
		counted, outage = false, true
		why = "transient, while the review service looks down: not counted as a delivery"
	default:
		c.m.TransientFailures.Inc()
		rec.Transient++
		counted = rec.Transient%transientPerDelivery == 0
		why = "transient: one in " + strconv.Itoa(transientPerDelivery) + " counts as a delivery"
	}
	if counted && d.deliveries >= int64(c.cfg.MaxDeliveries) {
		return &result{d: d, outcome: dead, err: err}
	}
	delay := c.retryDelay(1)
	if !outage {
		rec.Failures = max(rec.Failures, int(d.deliveries)-1) + 1
		delay = c.retryDelay(rec.Failures)
	}
	retryCount := int64(-1) // keep the count
	if !counted {
		retryCount = d.deliveries - 1 // take this delivery back
	}
	ctx, cancel := context.WithTimeout(c.finishCtx, 5*time.Second)
	defer cancel()
	_, rerr := stream.RecordFailure(ctx, c.rdb, &stream.FailureParams{
		Stream: c.cfg.Stream, Group: c.cfg.Group, Consumer: c.cfg.Name, ID: d.msg.ID,
		Delay: delay, Record: rec, RetryCount: retryCount,
		TTL: 2*max(RetryBackoffMax, c.cfg.ReclaimIdle) + time.Hour,
	})
	if rerr != nil {
		// Without the note the entry is retried after ReclaimIdle, and its
		// delivery counts: at the limit, dead-letter it now rather than
		// have the next delivery do so without the error.
		c.m.Errors.WithLabelValues("retry").Inc()
		c.log.WarnContext(ctx, "consumer: noting a failed delivery failed; it is retried after RECLAIM_IDLE and counts",
			slog.String("task_id", d.msg.ID), slog.String("err", rerr.Error()))
		if d.deliveries >= int64(c.cfg.MaxDeliveries) {
			return &result{d: d, outcome: dead, err: err}
		}
		delay = c.cfg.ReclaimIdle
	}
	if why != "" {
		why += "; "
	}
	return &result{d: d, outcome: retried, err: fmt.Errorf("%w (%sretry in %s)", err, why, delay.Round(time.Millisecond))}
}

// breaker stops a consumer from burning through the stream while the
// review service is down: after breakerThreshold distinct entries failed
// transiently in a row it opens, and the consumer fetches nothing but one
// probe delivery at a time, after a backoff that grows from ReclaimIdle/16
// to ReclaimIdle. The first answer from the service (a success, or a
// failure the handler reports about a job) closes it. It logs once when it
// opens and once when it closes. The zero value is closed.
type breaker struct {
	mu      sync.Mutex
	streak  map[string]bool // entries that failed transiently since the last answer
	open    bool
	since   time.Time
	probeAt time.Time // when the next probe may be fetched
	probing bool      // a probe is being fetched or handled
	probe   string    // its entry ID, once fetched
	// readerTurn lets the reader fetch the probe: the reclaimer, which
	// finds the failed entries, probes first; when none is due, the next
	// probe is a new entry. Without it the reader, back at once from each
	// empty read, could keep the probe from the failed entries for good.
	readerTurn bool
	bo         backoff.Backoff
	wake       chan struct{} // closed when the state changes
}

// changed wakes the fetchers waiting on the breaker. Called with mu held.
func (b *breaker) changed() {
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// breakerFailed records a transient failure of entry id, and reports
// whether the review service looks down: the breaker was open, or opens
// now.
func (c *Consumer) breakerFailed(id string, err error) bool {
	b := &c.brk
	b.mu.Lock()
	defer b.mu.Unlock()
	wasProbe := b.probing && b.probe == id
	if wasProbe {
		b.probing, b.probe = false, ""
		b.changed()
	}
	if b.open {
		if wasProbe {
			b.probeAt = time.Now().Add(b.bo.Next())
		}
		return true
	}
	if b.streak == nil {
		b.streak = map[string]bool{}
	}
	b.streak[id] = true
	if len(b.streak) < breakerThreshold {
		return false
	}
	b.open, b.since, b.streak = true, time.Now(), nil
	b.probing, b.probe, b.readerTurn = false, "", false
	b.bo = backoff.Backoff{Min: max(c.cfg.ReclaimIdle/16, time.Millisecond), Max: c.cfg.ReclaimIdle}
	b.probeAt = b.since.Add(b.bo.Next())
	b.changed()
	c.m.CircuitOpen.Set(1)
	c.log.WarnContext(context.Background(), "consumer: the review service looks down; holding back, probing it with one job at a time",
		slog.Int("failures_in_a_row", breakerThreshold), slog.String("err", errorText(err)))
	return true
}

// breakerAnswered records an answer of the review service, for entry id:
// a success, or a failure that the handler reports about the job.
func (c *Consumer) breakerAnswered(id string) {
	b := &c.brk
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probing && b.probe == id {
		b.probing, b.probe = false, ""
	}
	b.streak = nil
	if b.open {
		b.open, b.probing, b.probe = false, false, ""
		b.bo.Reset()
		c.m.CircuitOpen.Set(0)
		c.log.InfoContext(context.Background(), "consumer: the review service answers again; fetching resumed",
			slog.Duration("down_for", time.Since(b.since).Round(time.Millisecond)))
	}
	b.changed()
}

// breakerNoVerdict records that entry id ended without telling anything
// about the review service (settled without a handler, or abandoned at
// shutdown): if it was the probe, another may go.
func (c *Consumer) breakerNoVerdict(id string) {
	b := &c.brk
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probing && b.probe == id {
		b.probing, b.probe = false, ""
		b.changed()
	}
}

// fetchSlots waits for idle handlers and for the breaker, and returns how
// many entries may be fetched, 0 once ctx is done. While the breaker is
// open that is one entry, the probe, once its time has come (and, for the
// reader, its turn); the caller then reports what it fetched with
// probeFetched.
func (c *Consumer) fetchSlots(ctx context.Context, limit int, reader bool) (n int, probe bool) {
	b := &c.brk
	for {
		if !c.breakerWait(ctx, reader) {
			return 0, false
		}
		n := c.acquire(ctx, limit)
		if n == 0 {
			return 0, false
		}
		b.mu.Lock()
		switch {
		case !b.open:
			b.mu.Unlock()
			return n, false
		case b.mayProbe(reader):
			b.probing, b.probe = true, ""
			if reader {
				b.readerTurn = false
			}
			b.mu.Unlock()
			c.release(n - 1)
			return 1, true
		}
		b.mu.Unlock()
		c.release(n) // opened meanwhile, or the other fetcher probes
	}
}

// mayProbe reports whether the reader (or the reclaimer) may fetch the
// probe now. Called with mu held.
func (b *breaker) mayProbe(reader bool) bool {
	return !b.probing && !time.Now().Before(b.probeAt) && (!reader || b.readerTurn)
}

// breakerWait waits until the breaker is closed or the caller may probe.
// It returns false once ctx is done.
func (c *Consumer) breakerWait(ctx context.Context, reader bool) bool {
	b := &c.brk
	for {
		b.mu.Lock()
		if !b.open || b.mayProbe(reader) {
			b.mu.Unlock()
			return true
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		wait := time.Hour // until the state changes
		if !b.probing && (!reader || b.readerTurn) {
			wait = time.Until(b.probeAt)
		}
		b.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// probeFetched tells the breaker what a fetch that was the probe (probe
// true) brought: the probe is the first of ids. With none, another fetch
// may probe: after the reclaimer, the reader.
func (c *Consumer) probeFetched(probe, reader bool, ids []string) {
	if !probe {
		return
	}
	b := &c.brk
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(ids) == 0 {
		b.probing = false
		b.readerTurn = !reader
		b.changed()
		return
	}
	b.probe = ids[0]
}
