// Package backoff spaces out retries against a server that is down:
// exponential, capped and jittered, so replicas that failed together do not
// retry together; and logs such outages once, not once per retry.
package backoff

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
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

// Jitter spreads d by ±10%, so that replicas started together do not act
// together.
func Jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// Retrier retries an operation against a server that may be down: it waits
// a Backoff delay between tries and logs only the changes of state, one
// line when the operation starts failing and one when it works again, not
// one per retry. It is not safe for concurrent use.
type Retrier struct {
	Backoff
	Logger    *slog.Logger
	Level     slog.Level // of the Failing line
	Failing   string     // logged at the first failure, with the error
	Recovered string     // logged at Info when it works again
	// Gate, if set, is shared with the process's other loops: the first
	// failure is logged at Level only if the gate allows it, else at Debug.
	Gate *Gate

	failing bool
	quiet   bool // the Gate held back the Failing line
	since   time.Time
}

// Failed records a failure, logs it if it is the first of a series, and
// waits before the next try; it returns false if ctx ends first.
func (r *Retrier) Failed(ctx context.Context, err error) bool {
	if !r.failing {
		r.failing, r.since, r.quiet = true, time.Now(), !r.Gate.Allow()
		level := r.Level
		if r.quiet {
			level = slog.LevelDebug
		}
		r.Logger.Log(ctx, level, r.Failing, slog.String("err", err.Error()))
	} else {
		r.Logger.DebugContext(ctx, "still failing; retrying with backoff", slog.String("while", r.Failing),
			slog.String("err", err.Error()))
	}
	return Sleep(ctx, r.Next())
}

// OK records a success and logs the recovery, if there was a failure.
func (r *Retrier) OK(ctx context.Context) {
	if r.failing {
		level := slog.LevelInfo
		if r.quiet { // its failure was not logged either
			level = slog.LevelDebug
		}
		r.Logger.Log(ctx, level, r.Recovered, slog.Int("failures", r.Failures()),
			slog.Duration("down_for", time.Since(r.since)))
		r.failing = false
	}
	r.Reset()
}

// Gate collapses the failure lines of the loops of one process that reach
// one server: while the server is down (or failing over), each of them
// fails, and each would log. Allow lets one line through per Window; the
// others are logged at Debug. The zero value lets one line through per
// minute; a nil *Gate lets every line through. Safe for concurrent use.
type Gate struct {
	Window time.Duration

	mu   sync.Mutex
	last time.Time
}

// Allow reports whether a failure line may be logged at its own level now.
func (g *Gate) Allow() bool {
	if g == nil {
		return true
	}
	window := g.Window
	if window <= 0 {
		window = time.Minute
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); g.last.IsZero() || now.Sub(g.last) >= window {
		g.last = now
		return true
	}
	return false
}

// Level is level if Allow, else Debug.
func (g *Gate) Level(level slog.Level) slog.Level {
	if g.Allow() {
		return level
	}
	return slog.LevelDebug
}
