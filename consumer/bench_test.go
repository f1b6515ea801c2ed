package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// BenchmarkConsumer measures consumers with a no-op handler, the status
// update and the XACK included: each iteration is one job.
func BenchmarkConsumer(b *testing.B) {
	for _, consumers := range []int{1, 2} {
		for _, concurrency := range []int{8, 64} {
			b.Run(fmt.Sprintf("consumers=%d/concurrency=%d", consumers, concurrency), func(b *testing.B) {
				ctx := context.Background()
				schema := testenv.NewSchema(b)
				rdb := testenv.NewRedis(b)
				stream := testenv.Stream(b, rdb)
				if err := db.GenerateJobs(ctx, schema.Pool, b.N); err != nil {
					b.Fatal(err)
				}
				r, err := relay.New(schema.Pool, rdb, relay.Config{Stream: stream, BatchSize: 1000, MaxStreamLag: -1, MaxMemoryRatio: -1})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Drain(ctx); err != nil {
					b.Fatal(err)
				}
				noop := HandlerFunc(func(context.Context, Job) error { return nil })
				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan error, consumers)
				var all []*Consumer
				b.ResetTimer()
				for range consumers {
					c, err := New(schema.Pool, rdb, Config{Stream: stream, Handler: noop, Concurrency: concurrency})
					if err != nil {
						b.Fatal(err)
					}
					all = append(all, c)
					go func() { done <- c.Run(runCtx) }()
				}
				// Wait on the consumers' own counters: polling the table
				// would load the server being measured.
				for reviewed := 0.0; reviewed < float64(b.N); time.Sleep(time.Millisecond) {
					reviewed = 0
					for _, c := range all {
						reviewed += testutil.ToFloat64(c.m.Jobs.WithLabelValues("reviewed"))
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
				cancel()
				for range consumers {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
