package dashboard

import (
	"context"
	"sync"
	"time"

	"github.com/jobrelay/jobrelay/inspect"
)

// snapshotCache holds the latest snapshot and takes a new one at most once
// per refresh, one at a time: any number of viewers cost one read per
// refresh at most, and none while nobody looks.
type snapshotCache struct {
	mu       sync.Mutex
	snap     *inspect.Snapshot // the latest good snapshot
	err      error             // the error of the latest read, if it failed
	readAt   time.Time         // when the latest read finished; zero: read now
	inflight chan struct{}     // closed when the read under way is done
}

// get returns the latest snapshot, reading a new one with take if the
// latest read is older than refresh. When a read fails, it returns the
// latest good snapshot (nil if none) with the error.
func (c *snapshotCache) get(ctx context.Context, refresh time.Duration, take func(context.Context) (*inspect.Snapshot, error)) (*inspect.Snapshot, error) {
	c.mu.Lock()
	for {
		if !c.readAt.IsZero() && time.Since(c.readAt) < refresh {
			defer c.mu.Unlock()
			return c.snap, c.err
		}
		if c.inflight == nil {
			break
		}
		wait := c.inflight
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
		if !c.readAt.IsZero() {
			defer c.mu.Unlock()
			return c.snap, c.err // the read we waited for, however old refresh says it is
		}
	}
	done := make(chan struct{})
	c.inflight = done
	c.mu.Unlock()

	// The read is shared: one viewer leaving does not cancel it for the
	// others.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	snap, err := take(rctx)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.readAt, c.err, c.inflight = time.Now(), err, nil
	if err == nil {
		c.snap = snap
	}
	close(done)
	return c.snap, c.err
}

// invalidate makes the next get read afresh (after an action).
func (c *snapshotCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readAt = time.Time{}
}
