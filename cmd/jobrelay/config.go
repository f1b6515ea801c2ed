package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/relay"
)

// Defaults of the CLI's own settings, which reach PostgreSQL and Redis on
// this machine, so `make run` needs no setup. The pipeline's settings have
// their defaults in relay.Config and consumer.Config.
const (
	databaseURLDefault = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	redisURLDefault    = "redis://127.0.0.1:6379/0"
	metricsAddrDefault = ":9090"
)

// dbConfig is what the commands that only talk to PostgreSQL need.
type dbConfig struct {
	DatabaseURL string
	LogFormat   string
	LogLevel    slog.Level
}

func (c *dbConfig) bindings() []*binding {
	return []*binding{
		{env: "DATABASE_URL", flag: "database-url", ptr: &c.DatabaseURL, def: databaseURLDefault, meta: "URL",
			help: "PostgreSQL URL; sslmode and search_path go in its query", check: checkDatabaseURL, secret: db.RedactURL},
		{env: "LOG_FORMAT", flag: "log-format", ptr: &c.LogFormat, def: "text", meta: "text|json",
			help: "text (colored on a terminal) or json", check: oneOf("text", "json")},
		{env: "LOG_LEVEL", flag: "log-level", ptr: &c.LogLevel, def: "info", meta: "LEVEL",
			help: "debug, info, warn or error"},
	}
}

// commonConfig is what every command that talks to both servers needs.
type commonConfig struct {
	dbConfig
	RedisURL string
	Stream   string
}

func (c *commonConfig) bindings() []*binding {
	return append(c.dbConfig.bindings(),
		&binding{env: "REDIS_URL", flag: "redis-url", ptr: &c.RedisURL, def: redisURLDefault, meta: "URL",
			help: "Redis URL; rediss:// for TLS", check: checkRedisURL, secret: db.RedactURL},
		&binding{env: "JOB_REVIEW_QUEUE_NAME", flag: "stream", ptr: &c.Stream, def: relay.StreamDefault, meta: "NAME",
			help: "Redis stream of jobs to review"},
	)
}

// relayBindings binds the relay's variables to the fields of c. Stream is
// bound by commonConfig.
func relayBindings(c *relay.Config) []*binding {
	return []*binding{
		{env: "JOB_REVIEW_GROUP", flag: "group", field: "Group", ptr: &c.Group, def: relay.GroupDefault, meta: "NAME",
			help: "consumer group (its lag holds the relay back)"},
		{env: "BATCH_SIZE", flag: "batch-size", field: "BatchSize", ptr: &c.BatchSize, def: relay.BatchSizeDefault, meta: "N",
			help: "jobs claimed, published and committed per cycle"},
		{env: "RELAY_WORKERS", flag: "workers", field: "Workers", ptr: &c.Workers, def: relay.WorkersDefault, meta: "N",
			help: "cycles run side by side while a backlog drains, each on its own connection"},
		{env: "POLL_INTERVAL", flag: "poll-interval", field: "PollInterval", ptr: &c.PollInterval, def: relay.PollIntervalDefault, meta: "DURATION",
			help: "safety-net poll under LISTEN/NOTIFY, and the reaper's tick"},
		{env: "POLL_INTERVAL_MINUTES", field: "PollInterval", ptr: &c.PollInterval, minutesOf: "POLL_INTERVAL", meta: "MINUTES",
			help: "the old poller's POLL_INTERVAL, in minutes; read when POLL_INTERVAL is not set"},
		{env: "POLL_ONLY", flag: "poll-only", field: "PollOnly", ptr: &c.PollOnly, def: false,
			help: "no LISTEN/NOTIFY, for poolers that break it (PgBouncer transaction mode)"},
		{env: "CYCLE_TIMEOUT", flag: "cycle-timeout", field: "CycleTimeout", ptr: &c.CycleTimeout, def: relay.CycleTimeoutDefault, meta: "DURATION",
			help: "longest a cycle may hold row locks (also the session's statement and idle-in-transaction timeouts)"},
		{env: "DEDUP_TTL", flag: "dedup-ttl", field: "DedupTTL", ptr: &c.DedupTTL, defText: "2 × (CYCLE_TIMEOUT + POLL_INTERVAL)", meta: "DURATION",
			help: "how long records of uncommitted batches are kept"},
		{env: "REENQUEUE_AFTER", flag: "reenqueue-after", field: "ReenqueueAfter", ptr: &c.ReenqueueAfter, def: relay.ReenqueueAfterDefault, meta: "DURATION",
			help: "age after which an in_review job whose stream entry is gone goes back to pending_review; 0 disables"},
		{env: "MAX_STREAM_LAG", flag: "max-stream-lag", field: "MaxStreamLag", ptr: &c.MaxStreamLag, meta: "N",
			defText: fmt.Sprintf("%d (%d with TENANT_FAIR)", relay.MaxStreamLagDefault, relay.MaxStreamLagFairDefault),
			help:    "entries the group may leave unread before the relay pauses (keep it short for priorities to decide end to end); 0 disables"},
		{env: "PRIORITY_STRICT", flag: "priority-strict", field: "PriorityStrict", ptr: &c.PriorityStrict, def: false,
			help: "claim strictly by priority; by default one claim in 10 takes the oldest jobs, so lower priorities keep flowing"},
		{env: "TENANT_FAIR", flag: "tenant-fair", field: "TenantFair", ptr: &c.TenantFair, def: false,
			help: "share each claim between the tenants with pending jobs"},
		{env: "TENANT_WEIGHTS", flag: "tenant-weights", field: "TenantWeights", ptr: &c.TenantWeights, meta: "T=W,...",
			help: "tenants' weights in fair claims (unlisted tenants weigh 1); turns TENANT_FAIR on"},
		{env: "TENANT_MAX_IN_FLIGHT", flag: "tenant-max-in-flight", field: "TenantMaxInFlight", ptr: &c.TenantMaxInFlight, def: 0, meta: "N",
			help: "most jobs in_review per tenant; 0 sets no cap; turns TENANT_FAIR on"},
	}
}

// consumerBindings binds the consumer's variables to the fields of c, and
// HANDLER to spec. With group false, JOB_REVIEW_GROUP is bound by the
// relay's bindings (jobrelay run).
func consumerBindings(c *consumer.Config, spec *string, group bool) []*binding {
	var bs []*binding
	if group {
		bs = append(bs, &binding{env: "JOB_REVIEW_GROUP", flag: "group", field: "Group", ptr: &c.Group, def: consumer.GroupDefault, meta: "NAME",
			help: "consumer group"})
	}
	return append(bs,
		&binding{env: "HANDLER", flag: "handler", field: "Handler", ptr: spec, def: consumer.HandlerSpecDefault, meta: "SPEC",
			help: `review handler: "log", "exec:CMD" (job JSON on stdin) or "http:URL" (job JSON POSTed)`},
		&binding{env: "CONCURRENCY", flag: "concurrency", field: "Concurrency", ptr: &c.Concurrency, def: consumer.ConcurrencyDefault, meta: "N",
			help: "handlers running at once"},
		&binding{env: "RECLAIM_IDLE", flag: "reclaim-idle", field: "ReclaimIdle", ptr: &c.ReclaimIdle, def: consumer.ReclaimIdleDefault, meta: "DURATION",
			help: "idle time after which a delivered job is retried by any consumer"},
		&binding{env: "MAX_DELIVERIES", flag: "max-deliveries", field: "MaxDeliveries", ptr: &c.MaxDeliveries, def: consumer.MaxDeliveriesDefault, meta: "N",
			help: "deliveries before a job is dead-lettered and marked failed"},
		&binding{env: "HANDLER_TIMEOUT", flag: "handler-timeout", field: "HandlerTimeout", ptr: &c.HandlerTimeout, def: consumer.HandlerTimeoutDefault, meta: "DURATION",
			help: "longest one handler call may run"},
		&binding{env: "SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", field: "ShutdownTimeout", ptr: &c.ShutdownTimeout, def: consumer.ShutdownTimeoutDefault, meta: "DURATION",
			help: "how long handlers in flight may finish after SIGTERM; 0 cancels them at once"},
	)
}

// checks of the CLI's own settings

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(allowed, v) {
			return nil
		}
		return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
}

func checkDatabaseURL(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	// pgx reads a string that is not a postgres:// URL as key=value pairs,
	// so "mysql://u@db/x?a=b" would pass as one odd key, sent to the server.
	if m := urlScheme.FindStringSubmatch(v); m != nil && m[1] != "postgres" && m[1] != "postgresql" {
		return errors.New("is not a valid PostgreSQL URL")
	}
	if _, err := pgxpool.ParseConfig(v); err != nil {
		return errors.New("is not a valid PostgreSQL URL")
	}
	return nil
}

var urlScheme = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*)://`)

func checkRedisURL(v string) error {
	if _, err := redis.ParseURL(v); err != nil {
		return errors.New("is not a valid Redis URL (redis://[user:password@]host:port/db, or rediss:// for TLS)")
	}
	return nil
}

// intRange checks a flag of the CLI's own that is a whole number.
func intRange(lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
		}
		return nil
	}
}

// durationAtLeast checks a flag of the CLI's own that is a duration.
func durationAtLeast(lo time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo {
			return fmt.Errorf(`must be a duration of at least %s, such as "15m"`, lo)
		}
		return nil
	}
}

// checkListenAddr accepts host:port or :port with a port from 0 to 65535,
// or empty.
func checkListenAddr(v string) error {
	if v == "" {
		return nil // disabled
	}
	_, port, err := net.SplitHostPort(v)
	if err == nil && port != "" {
		if _, err = net.DefaultResolver.LookupPort(context.Background(), "tcp", port); err == nil {
			return nil
		}
	}
	return errors.New(`must be host:port or :port with a port from 0 to 65535 (":9090", "127.0.0.1:9090"), or empty to disable`)
}
