package testenv

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/sample"
)

// Start runs run (a relay's or a consumer's Run) in a goroutine until stop
// is called or the test ends, whichever comes first. stop cancels run's
// context, waits for it to return, and fails the test if it returned an
// error.
func Start(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(Context(t)))
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Seed inserts n sample jobs, pending review, in batches of 5,000.
func Seed(t testing.TB, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := Context(t)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for done := 0; done < n; done += 5000 {
		if _, err := db.InsertJobs(ctx, pool, sample.Jobs(rng, min(5000, n-done))); err != nil {
			t.Fatalf("seed %d jobs: %v", n, err)
		}
	}
}
