package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
)

// clients are the connections a command opens, and closes.
type clients struct {
	pool *pgxpool.Pool
	rdb  *redis.Client
}

// openClients creates the pool and the Redis client. Neither connects yet:
// a server that is down at start is retried by whoever uses it.
func openClients(ctx context.Context, c *commonConfig, maxConns int32) (*clients, error) {
	pool, err := db.Open(ctx, c.DatabaseURL, maxConns)
	if err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		pool.Close()
		return nil, usagef("REDIS_URL: is not a valid Redis URL")
	}
	opts.ContextTimeoutEnabled = true // cycles and shutdowns bound Redis calls with their contexts
	if opts.ClientName == "" {
		opts.ClientName = "jobrelay"
	}
	return &clients{pool: pool, rdb: redis.NewClient(opts)}, nil
}

func (c *clients) Close() {
	_ = c.rdb.Close()
	c.pool.Close()
}

// logStart logs the configuration a long-running command starts with,
// passwords hidden.
func logStart(ctx context.Context, logger *slog.Logger, what string, c *commonConfig, attrs ...slog.Attr) {
	base := make([]slog.Attr, 0, 4+len(attrs))
	base = append(base,
		slog.String("version", versionString()),
		slog.String("database_url", db.RedactURL(c.DatabaseURL)),
		slog.String("redis_url", db.RedactURL(c.RedisURL)),
		slog.String("stream", c.Stream),
	)
	logger.LogAttrs(ctx, slog.LevelInfo, "jobrelay "+what+": starting", uniqueAttrs(append(base, attrs...))...)
}

// waitForPostgres retries until PostgreSQL answers, logging once when it
// does not and once when it does; false if ctx ends first.
func waitForPostgres(ctx context.Context, logger *slog.Logger, pool *pgxpool.Pool) bool {
	retry := backoff.Retrier{Logger: logger, Level: slog.LevelError,
		Failing: "jobrelay: PostgreSQL is unreachable; retrying", Recovered: "jobrelay: PostgreSQL is reachable"}
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pool.Ping(pctx)
		cancel()
		if err == nil {
			retry.OK(ctx)
			return true
		}
		if ctx.Err() != nil || !retry.Failed(ctx, err) {
			return false
		}
	}
}
