// Package backoff spaces out retries against a server that is down:
// exponential, capped and jittered, so replicas that failed together do not
// retry together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out the delays before successive retries. The zero value
// uses MinDefault and MaxDefault. It is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Defaults of Backoff's Min and Max.
const (
	MinDefault = 100 * time.Millisecond
	MaxDefault = 10 * time.Second
)

// Next returns the delay before the next retry: Min doubled per failure
// so far, up to Max, of which a random half is taken off.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = MinDefault
	}
	if hi <= 0 {
		hi = MaxDefault
	}
	d := hi
	if b.attempt < 32 {
		if e := lo << b.attempt; e > 0 && e < hi {
			d = e
		}
	}
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

// Failures is the number of delays handed out since the last Reset.
func (b *Backoff) Failures() int { return b.attempt }

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits for d or until ctx is done, and reports whether it waited the
// whole time.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
