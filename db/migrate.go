package db

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/jobrelay/jobrelay"
)

// NewMigrator returns a goose provider for the embedded migrations, applied
// to the pool's current schema (the first of its search_path). Migrators of
// the same schema take turns through an advisory lock, so several replicas
// may run `migrate up` at once; migrators of different schemas do not wait
// for each other. Close the provider when done; the pool stays open.
func NewMigrator(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (*goose.Provider, error) {
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return nil, errors.New("no schema to migrate: the search_path names no schema that exists")
	}
	h := fnv.New64a()
	h.Write([]byte("jobrelay migrations " + *schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 300), // poll every second, up to five minutes
	)
	if err != nil {
		return nil, fmt.Errorf("create migration lock: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), jobrelay.Migrations(), opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// MigrateResult is what MigrateUp did.
type MigrateResult struct {
	Applied int   // migrations applied
	Version int64 // the schema's version after them
}

// String says what happened: "applied 3 migrations, now at version 4", or
// "schema up to date at version 4".
func (r MigrateResult) String() string {
	switch r.Applied {
	case 0:
		return fmt.Sprintf("schema up to date at version %d", r.Version)
	case 1:
		return fmt.Sprintf("applied 1 migration, now at version %d", r.Version)
	default:
		return fmt.Sprintf("applied %d migrations, now at version %d", r.Applied, r.Version)
	}
}

// MigrateUp applies the pending migrations to the pool's current schema
// (see NewMigrator) and reports what it did.
func MigrateUp(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (MigrateResult, error) {
	m, err := NewMigrator(ctx, pool, logger)
	if err != nil {
		return MigrateResult{}, err
	}
	defer m.Close()
	res, err := m.Up(ctx)
	if err != nil {
		return MigrateResult{Applied: len(res)}, fmt.Errorf("apply migrations: %w", err)
	}
	v, err := m.GetDBVersion(ctx)
	if err != nil {
		return MigrateResult{Applied: len(res)}, fmt.Errorf("read schema version: %w", err)
	}
	return MigrateResult{Applied: len(res), Version: v}, nil
}

// BookkeepingVersion is the migration that adds the relay's bookkeeping
// (stream_id, enqueued_at, attempts, last_error). Rolling it back strips
// in_review jobs of the entry their consumers are working on.
const BookkeepingVersion = 3

// StreamVersion is the migration that records the stream each job was
// published to. Rolling it back makes every deployment's reaper treat the
// in_review jobs of the others as its own.
const StreamVersion = 4

// guardedRollbacks says, for each migration that must not be rolled back
// while jobs are in_review, what it would do to them.
var guardedRollbacks = []struct {
	version int64
	name    string
	harm    string
}{
	{StreamVersion, "job stream", "drops the stream they were published to, so the reaper of every deployment on this database would re-enqueue them"},
	{BookkeepingVersion, "relay bookkeeping", "drops their stream_id and enqueued_at, so they would be published again and may be reviewed twice"},
}

// InReviewError is why CheckRollback refuses: jobs are in_review.
type InReviewError struct {
	InReview int64  // jobs in_review
	Version  int64  // the migration that would be rolled back
	Name     string // its name
	Harm     string // what rolling it back would do to them
}

// Error implements error.
func (e *InReviewError) Error() string {
	jobs := fmt.Sprintf("%d jobs are", e.InReview)
	if e.InReview == 1 {
		jobs = "1 job is"
	}
	return fmt.Sprintf("%s in_review: rolling back migration %d (%s) %s; let the consumers finish them (jobrelay status), or pass --force",
		jobs, e.Version, e.Name, e.Harm)
}

// CheckRollback returns an *InReviewError if rolling the schema back from
// version from to version to would undo the bookkeeping or the stream
// migration while jobs are in_review. It does not lock: run it with the
// relays stopped.
func CheckRollback(ctx context.Context, q DBTX, from, to int64) error {
	for _, g := range guardedRollbacks {
		if from < g.version || to >= g.version {
			continue
		}
		var n int64
		if err := q.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'in_review'`).Scan(&n); err != nil {
			return fmt.Errorf("count in_review jobs: %w", err)
		}
		if n > 0 {
			return &InReviewError{InReview: n, Version: g.version, Name: g.name, Harm: g.harm}
		}
		return nil
	}
	return nil
}
