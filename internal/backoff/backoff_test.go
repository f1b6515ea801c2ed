package backoff

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBackoffGrowsToItsCapWithJitter(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: 10 * time.Millisecond, Max: time.Second}
	prevHi := time.Duration(0)
	for i := range 40 {
		hi := min(10*time.Millisecond<<min(i, 31), time.Second)
		d := b.Next()
		if d < hi/2 || d > hi {
			t.Fatalf("retry %d: delay %v outside [%v, %v]", i, d, hi/2, hi)
		}
		if hi < prevHi {
			t.Fatalf("retry %d: cap shrank", i)
		}
		prevHi = hi
	}
	if b.Failures() != 40 {
		t.Fatalf("Failures() = %d, want 40", b.Failures())
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after Reset: delay %v, want at most Min", d)
	}
}

func TestRetrierLogsChangesNotRetries(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := Retrier{Backoff: Backoff{Min: time.Microsecond, Max: time.Microsecond}, Logger: logger,
		Level: slog.LevelError, Failing: "server down", Recovered: "server back"}
	ctx := context.Background()
	for range 3 {
		if !r.Failed(ctx, errors.New("connection refused")) {
			t.Fatal("Failed returned false with a live context")
		}
	}
	r.OK(ctx)
	r.OK(ctx)
	out := buf.String()
	if n := strings.Count(out, "level=ERROR msg=\"server down\""); n != 1 {
		t.Fatalf("failure logged %d times at Error, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "msg=\"server back\""); n != 1 || !strings.Contains(out, "failures=3") {
		t.Fatalf("recovery logged %d times, want once with failures=3:\n%s", n, out)
	}
	if r.Failures() != 0 {
		t.Fatal("OK did not reset the backoff")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	r.Backoff = Backoff{Min: time.Hour, Max: time.Hour}
	if r.Failed(cancelled, errors.New("x")) {
		t.Fatal("Failed waited although ctx was done")
	}
}
