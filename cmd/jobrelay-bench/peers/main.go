// Command peers measures what users would otherwise pick for jobrelay's
// work, on the same servers and the same jobs: Watermill's SQL outbox
// Forwarder publishing to a Redis stream, Watermill's Redis stream
// subscriber recording each job as reviewed, and asynq. It is a module of
// its own so that jobrelay's go.mod does not carry them; jobrelay-bench
// builds it and runs it once per measurement (`make bench`).
//
// Each run gets a schema whose jobs table holds -jobs pending jobs (made by
// jobrelay-bench with jobrelay's migrations) and a stream name of its own;
// it prepares what the peer needs (untimed), drains the jobs (timed), and
// prints the jobs per second on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rate, err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
	fmt.Println(strconv.FormatFloat(rate, 'f', 1, 64))
}

// env is what every scenario works with.
type env struct {
	pool    *pgxpool.Pool
	rdb     *redis.Client
	stream  string
	jobs    int
	workers int
}

func run(ctx context.Context, args []string) (float64, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	scenario := fs.String("scenario", "", "forwarder, subscriber, asynq-enqueue or asynq")
	dbURL := fs.String("database-url", "", "PostgreSQL URL whose search_path is the run's schema")
	redisURL := fs.String("redis-url", "", "Redis URL")
	key := fs.String("stream", "", "the run's stream name (asynq: its queue name)")
	jobs := fs.Int("jobs", 0, "pending jobs in the schema's jobs table")
	workers := fs.Int("workers", 2, "subscribers, or asynq servers")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if *dbURL == "" || *redisURL == "" || *key == "" || *jobs < 1 {
		return 0, errors.New("-database-url, -redis-url, -stream and -jobs are required")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return 0, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer pool.Close()
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return 0, fmt.Errorf("redis URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	e := &env{pool: pool, rdb: rdb, stream: *key, jobs: *jobs, workers: *workers}
	switch *scenario {
	case "forwarder":
		return e.forwarder(ctx)
	case "subscriber":
		return e.subscriber(ctx)
	case "asynq-enqueue":
		return e.asynqEnqueue(ctx)
	case "asynq":
		return e.asynqProcess(ctx)
	default:
		return 0, fmt.Errorf("unknown -scenario %q", *scenario)
	}
}

// pendingJob is what a peer publishes of a job: what jobrelay's entries hold.
type pendingJob struct {
	ID      string `json:"job_id"`
	Site    string `json:"site"`
	Title   string `json:"title"`
	Company string `json:"company"`
	URL     string `json:"job_url"`
}

// pendingJobs reads the schema's pending jobs.
func (e *env) pendingJobs(ctx context.Context) ([]pendingJob, error) {
	rows, err := e.pool.Query(ctx, `SELECT id::text, coalesce(site, ''), coalesce(title, ''), coalesce(company, ''), coalesce(job_url, '')
FROM jobs WHERE status = 'pending_review' ORDER BY created_at`)
	if err != nil {
		return nil, fmt.Errorf("read pending jobs: %w", err)
	}
	defer rows.Close()
	var out []pendingJob
	for rows.Next() {
		var j pendingJob
		if err := rows.Scan(&j.ID, &j.Site, &j.Title, &j.Company, &j.URL); err != nil {
			return nil, fmt.Errorf("read pending jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending jobs: %w", err)
	}
	if len(out) != e.jobs {
		return nil, fmt.Errorf("%d pending jobs, want %d", len(out), e.jobs)
	}
	return out, nil
}

// markInReview makes every pending job in_review, as a relay would have,
// and vacuums: what the consumers start from.
func (e *env) markInReview(ctx context.Context) error {
	if _, err := e.pool.Exec(ctx, `UPDATE jobs SET status = 'in_review', enqueued_at = now(), attempts = 1, updated_at = now()
WHERE status = 'pending_review'`); err != nil {
		return fmt.Errorf("mark jobs in_review: %w", err)
	}
	if _, err := e.pool.Exec(ctx, "VACUUM ANALYZE jobs"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return nil
}

// markReviewedSQL records one success, as a Watermill or asynq handler
// would: one autocommitted UPDATE per job.
const markReviewedSQL = `UPDATE jobs SET status = 'reviewed', updated_at = now() WHERE id = $1 AND status = 'in_review'`

// checkReviewed verifies that every job was recorded.
func (e *env) checkReviewed(ctx context.Context) error {
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'reviewed'`).Scan(&n); err != nil {
		return fmt.Errorf("count reviewed jobs: %w", err)
	}
	if n != e.jobs {
		return fmt.Errorf("%d jobs reviewed, want %d", n, e.jobs)
	}
	return nil
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
