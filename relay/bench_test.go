package relay

import (
	"context"
	"fmt"
	"testing"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// BenchmarkRelayCycle measures the relay's cycles (claim, idempotent
// publish, update, commit) on the real servers, logging included. Each
// iteration is one job: the relay drains b.N jobs seeded beforehand.
func BenchmarkRelayCycle(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			schema := testenv.NewSchema(b)
			rdb := testenv.NewRedis(b)
			stream := testenv.Stream(b, rdb)
			if err := db.GenerateJobs(ctx, schema.Pool, b.N); err != nil {
				b.Fatal(err)
			}
			r, err := New(schema.Pool, rdb, Config{Stream: stream, BatchSize: batch, MaxStreamLag: -1, MaxMemoryRatio: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			n, err := r.Drain(ctx)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if n != b.N {
				b.Fatalf("relayed %d jobs, want %d", n, b.N)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
