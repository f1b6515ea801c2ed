package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
)

// clients are the connections a command opens, and closes.
type clients struct {
	pool *pgxpool.Pool
	rdb  redis.UniversalClient
}

// redisTarget is what REDIS_URL names, in go-redis's URL conventions:
//
//   - with master_name=NAME, a primary found through Sentinel: the URL's
//     host and each addr= parameter are sentinels (redis.ParseFailoverURL);
//   - with addr= parameters, a Redis Cluster: the URL's host and each addr=
//     are seed nodes (redis.ParseClusterURL);
//   - otherwise one server (redis.ParseURL), which is a cluster after all if
//     it says cluster_enabled:1 (see openRedis).
type redisTarget struct {
	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// parseRedisURL reads REDIS_URL.
func parseRedisURL(raw string) (*redisTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, errors.New("master_name is empty")
		}
		return &redisTarget{failover: o}, nil
	case q.Has("addr"):
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, err
		}
		return &redisTarget{cluster: o}, nil
	default:
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return &redisTarget{single: o}, nil
	}
}

// openClients creates the pool and the Redis client. Neither connects yet,
// but for one look at a single Redis server to tell whether it is a
// cluster node: a server that is down at start is retried by whoever uses
// it.
func openClients(ctx context.Context, c *commonConfig, maxConns int32, logger *slog.Logger) (*clients, error) {
	pool, err := db.Open(ctx, c.DatabaseURL, maxConns)
	if err != nil {
		return nil, err
	}
	rdb, err := openRedis(ctx, c.RedisURL, logger)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &clients{pool: pool, rdb: rdb}, nil
}

// clusterProbeTimeout bounds openRedis's look at a single server.
const clusterProbeTimeout = 3 * time.Second

// openRedis creates the client REDIS_URL names (see redisTarget). Every
// kind honours context deadlines: cycles and shutdowns bound Redis calls
// with their contexts.
func openRedis(ctx context.Context, raw string, logger *slog.Logger) (redis.UniversalClient, error) {
	t, err := parseRedisURL(raw)
	if err != nil {
		return nil, usagef("REDIS_URL: is not a valid Redis URL")
	}
	switch {
	case t.failover != nil:
		o := t.failover
		o.ContextTimeoutEnabled = true
		o.ClientName = clientName(o.ClientName)
		return redis.NewFailoverClient(o), nil
	case t.cluster != nil:
		return newClusterClient(t.cluster), nil
	}
	o := t.single
	o.ContextTimeoutEnabled = true
	o.ClientName = clientName(o.ClientName)
	rdb := redis.NewClient(o)
	pctx, cancel := context.WithTimeout(ctx, clusterProbeTimeout)
	defer cancel()
	info, err := rdb.Info(pctx, "cluster").Result()
	if err != nil {
		if logger != nil {
			logger.WarnContext(ctx, "jobrelay: could not ask Redis whether it is a cluster node (INFO cluster); using REDIS_URL as one server "+
				"(name a cluster's nodes with addr= parameters to use it as a cluster whatever answers at start)",
				slog.String("err", err.Error()))
		}
		return rdb, nil
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return rdb, nil
	}
	_ = rdb.Close()
	co, err := redis.ParseClusterURL(clusterURL(raw))
	if err != nil {
		return nil, usagef("REDIS_URL: names a Redis Cluster node, but is not a valid cluster URL")
	}
	return newClusterClient(co), nil
}

// clusterURL drops the database number of a single server's URL: a
// cluster has only database 0, and go-redis's cluster URL has no path.
func clusterURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = ""
	return u.String()
}

// clusterReloadInterval is how often a cluster client reloads the slot map
// while in use. go-redis keeps sending a dead primary's slots to it until
// a reload (60s by default): after a failover, the commands of its slots
// fail for at most this long once the cluster has promoted a replica.
const clusterReloadInterval = time.Second

func newClusterClient(o *redis.ClusterOptions) *redis.ClusterClient {
	o.ContextTimeoutEnabled = true
	o.ClientName = clientName(o.ClientName)
	if o.ClusterStateReloadInterval == 0 {
		o.ClusterStateReloadInterval = clusterReloadInterval
	}
	return redis.NewClusterClient(o)
}

// clientName is the name connections give Redis (CLIENT SETNAME): the
// URL's client_name, or "jobrelay".
func clientName(name string) string {
	if name == "" {
		return "jobrelay"
	}
	return name
}

// redisKind names the kind of client, for the start-up log.
func redisKind(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return "cluster"
	case *redis.Client:
		if strings.HasPrefix(c.String(), "Redis<FailoverClient") {
			return "sentinel"
		}
		return "single"
	default:
		return fmt.Sprintf("%T", rdb)
	}
}

func (c *clients) Close() {
	_ = c.rdb.Close()
	c.pool.Close()
}

// logStart logs the configuration a long-running command starts with,
// passwords hidden.
func logStart(ctx context.Context, logger *slog.Logger, what string, c *commonConfig, attrs ...slog.Attr) {
	base := make([]slog.Attr, 0, 5+len(attrs))
	base = append(base,
		slog.String("version", versionString()),
		slog.String("database_url", db.RedactURL(c.DatabaseURL)),
		slog.String("redis_url", db.RedactURL(c.RedisURL)),
		slog.String("stream", c.Stream),
		slog.Int("partitions", c.Partitions),
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
