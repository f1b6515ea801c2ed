package relay_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// ExampleNew relays the jobs that wait for review to a stream, once, as
// `jobrelay relay --once` does.
func ExampleNew() {
	ctx := context.Background()
	env := testenv.NewExample() // a schema and stream of this example's own
	defer env.Close()

	pool, err := db.Open(ctx, env.DatabaseURL, 4)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
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
	opts.ContextTimeoutEnabled = true // New requires it
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	if _, err := db.InsertJobs(ctx, pool, []db.NewJob{
		{Title: "Go engineer", Company: "Acme"},
		{Title: "SRE", Company: "Initech"},
	}); err != nil {
		panic(err)
	}

	r, err := relay.New(pool, rdb, relay.Config{Stream: env.Stream})
	if err != nil {
		panic(err)
	}
	n, err := r.Drain(ctx) // Run(ctx) relays until ctx is done instead
	if err != nil {
		panic(err)
	}
	fmt.Println("relayed:", n)
	fmt.Println("in the stream:", rdb.XLen(ctx, env.Stream).Val())
	// Output:
	// relayed: 2
	// in the stream: 2
}
