package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// BenchmarkSteadyRate runs a relay and two consumers at their defaults in
// this process, with a no-op handler, while jobs are inserted one per
// transaction at 1,000 a second: each iteration is one job. It is the
// steady-rate row of `make bench` in one process, for a CPU profile:
//
//	go test -run '^$' -bench SteadyRate -benchtime 10000x -cpuprofile cpu.prof ./consumer/
func BenchmarkSteadyRate(b *testing.B) {
	const rate = 1000
	ctx := context.Background()
	schema := testenv.NewSchema(b)
	rdb := testenv.NewRedis(b)
	stream := testenv.Stream(b, rdb)
	r, err := relay.New(schema.Pool, rdb, relay.Config{Stream: stream})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 3)
	go func() { done <- r.Run(runCtx) }()
	noop := HandlerFunc(func(context.Context, Job) error { return nil })
	var all []*Consumer
	for range 2 {
		c, err := New(schema.Pool, rdb, Config{Stream: stream, Handler: noop})
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, c)
		go func() { done <- c.Run(runCtx) }()
	}
	time.Sleep(time.Second) // the relay's first cycle and LISTEN, the group
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
		if _, err := db.InsertJob(ctx, schema.Pool, db.NewJob{Site: "otta", Title: "Steady", Company: "Acme", JobURL: "https://x"}); err != nil {
			b.Fatal(err)
		}
	}
	for reviewed := 0.0; reviewed < float64(b.N); time.Sleep(time.Millisecond) {
		reviewed = 0
		for _, c := range all {
			reviewed += testutil.ToFloat64(c.m.Jobs.WithLabelValues("reviewed"))
		}
	}
	b.StopTimer()
	cancel()
	for range 3 {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
