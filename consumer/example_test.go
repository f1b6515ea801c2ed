package consumer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// ExampleNew reviews the jobs of the stream with a Go handler, and stops
// once it has reviewed two.
func ExampleNew() {
	ctx := context.Background()
	env := testenv.NewExample() // a schema and stream of this example's own
	defer env.Close()
	pool, rdb := connect(ctx, env)
	defer pool.Close()
	defer rdb.Close()
	relayJobs(ctx, pool, rdb, env.Stream,
		db.NewJob{Title: "Go engineer", Company: "Acme"},
		db.NewJob{Title: "SRE", Company: "Initech"})

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu      sync.Mutex
		reviews []string
	)
	c, err := consumer.New(pool, rdb, consumer.Config{
		Stream: env.Stream,
		Handler: consumer.HandlerFunc(func(ctx context.Context, job consumer.Job) error {
			mu.Lock()
			defer mu.Unlock()
			// A NULL column is nil.
			title, company := "(untitled)", "(unknown)"
			if job.Title != nil {
				title = *job.Title
			}
			if job.Company != nil {
				company = *job.Company
			}
			reviews = append(reviews, fmt.Sprintf("reviewed %q at %s, attempt %d", title, company, job.Attempt))
			if len(reviews) == 2 {
				stop() // Run records the outcomes in flight, then returns
			}
			return nil
		}),
	})
	if err != nil {
		panic(err)
	}
	if err := c.Run(ctx); err != nil {
		panic(err)
	}
	slices.Sort(reviews) // handlers run side by side
	fmt.Println(strings.Join(reviews, "\n"))
	// Output:
	// reviewed "Go engineer" at Acme, attempt 1
	// reviewed "SRE" at Initech, attempt 1
}

// reviewer is an application's handler: a type of its own that implements
// consumer.Handler.
type reviewer struct {
	mu     sync.Mutex
	titles []string
	done   func() // called after the last expected job
	want   int
}

func (r *reviewer) Handle(_ context.Context, job consumer.Job) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	title := ""
	if job.Title != nil { // nil for a NULL title
		title = *job.Title
	}
	r.titles = append(r.titles, title)
	if len(r.titles) == r.want {
		r.done()
	}
	return nil
}

// Example_embed runs a whole pipeline inside an application: a relay and a
// consumer with the application's handler, under the application's
// context, with their metrics on the application's registry, and reads the
// pipeline's state as `jobrelay status` does.
func Example_embed() {
	ctx := context.Background()
	env := testenv.NewExample() // a schema and stream of this example's own
	defer env.Close()
	pool, rdb := connect(ctx, env)
	defer pool.Close()
	defer rdb.Close()
	if _, err := db.InsertJobs(ctx, pool, []db.NewJob{{Title: "Go engineer"}, {Title: "SRE"}, {Title: "DBA"}}); err != nil {
		panic(err)
	}

	reg := prometheus.NewRegistry() // the application's own
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	handler := &reviewer{want: 3, done: stop}

	r, err := relay.New(pool, rdb, relay.Config{Stream: env.Stream, Registerer: reg})
	if err != nil {
		panic(err)
	}
	c, err := consumer.New(pool, rdb, consumer.Config{Stream: env.Stream, Handler: handler, Registerer: reg})
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, run := range []func(context.Context) error{r.Run, c.Run} {
		wg.Go(func() { errs <- run(runCtx) })
	}
	wg.Wait() // until the handler has seen three jobs; both stop cleanly
	close(errs)
	for err := range errs {
		if err != nil {
			panic(err)
		}
	}

	snap, err := inspect.Take(ctx, pool, rdb, inspect.Options{Stream: env.Stream, Counts: true})
	if err != nil {
		panic(err)
	}
	fmt.Println("reviewed:", snap.Jobs["reviewed"])
	fmt.Println("pending:", snap.Backlog.Pending, "in review:", snap.Backlog.InReview)
	fmt.Println("groups:", len(snap.Groups), "unacknowledged:", snap.Groups[0].Pending)

	families, err := reg.Gather() // sorted by name
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "jobrelay_relay_jobs_relayed_total":
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		case "jobrelay_consumer_jobs_total":
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == "reviewed" {
					fmt.Println(f.GetName()+`{result="reviewed"}`, m.GetCounter().GetValue())
				}
			}
		}
	}
	// Output:
	// reviewed: 3
	// pending: 0 in review: 0
	// groups: 1 unacknowledged: 0
	// jobrelay_consumer_jobs_total{result="reviewed"} 3
	// jobrelay_relay_jobs_relayed_total 3
}

// connect opens the pool, migrated, and a Redis client as New requires it.
func connect(ctx context.Context, env *testenv.Example) (*pgxpool.Pool, *redis.Client) {
	pool, err := db.Open(ctx, env.DatabaseURL, 8)
	if err != nil {
		panic(err)
	}
	migrator, err := db.NewMigrator(ctx, pool, nil)
	if err != nil {
		panic(err)
	}
	defer migrator.Close()
	if _, err := migrator.Up(ctx); err != nil {
		panic(err)
	}
	opts, err := redis.ParseURL(env.RedisURL)
	if err != nil {
		panic(err)
	}
	opts.ContextTimeoutEnabled = true // relay.New and consumer.New require it
	return pool, redis.NewClient(opts)
}

// relayJobs inserts jobs and relays them to the stream.
func relayJobs(ctx context.Context, pool *pgxpool.Pool, rdb *redis.Client, stream string, jobs ...db.NewJob) {
	if _, err := db.InsertJobs(ctx, pool, jobs); err != nil {
		panic(err)
	}
	r, err := relay.New(pool, rdb, relay.Config{Stream: stream})
	if err != nil {
		panic(err)
	}
	if _, err := r.Drain(ctx); err != nil {
		panic(err)
	}
}
