package relay

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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
			benchmarkRelay(b, Config{BatchSize: batch})
		})
	}
	// One worker: its cycles run one after another on one connection.
	b.Run("batch=100/workers=1", func(b *testing.B) {
		benchmarkRelay(b, Config{BatchSize: 100, Workers: 1})
	})
	// What the old poller's per-job log lines would cost at this rate: JSON
	// lines for every job (JobLogLimit -1) against the default, which logs
	// them at Debug for batches over 10.
	for _, limit := range []int{JobLogLimitDefault, -1} {
		b.Run(fmt.Sprintf("batch=100/json-logs/job-log-limit=%d", limit), func(b *testing.B) {
			devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer devnull.Close()
			logger := slog.New(slog.NewJSONHandler(devnull, nil)) // a write per line, as to a log file
			benchmarkRelay(b, Config{BatchSize: 100, JobLogLimit: limit, Logger: logger})
		})
	}
}

// benchmarkRelay drains b.N jobs seeded beforehand with a relay of cfg.
func benchmarkRelay(b *testing.B, cfg Config) {
	b.Helper()
	ctx := context.Background()
	schema := testenv.NewSchema(b)
	rdb := testenv.NewRedis(b)
	cfg.Stream, cfg.MaxStreamLag, cfg.MaxMemoryRatio = testenv.Stream(b, rdb), -1, -1
	if err := db.GenerateJobs(ctx, schema.Pool, b.N); err != nil {
		b.Fatal(err)
	}
	r, err := New(schema.Pool, rdb, cfg)
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
}
