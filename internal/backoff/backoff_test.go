package backoff

import (
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
