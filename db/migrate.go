package db

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	migrations "github.com/jobrelay/jobrelay/goose"
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
		return nil, fmt.Errorf("no schema to migrate: the search_path names no schema that exists")
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
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), migrations.FS, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}
