package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/relay"
)

// Defaults that reach PostgreSQL and Redis on this machine, so `make run`
// needs no setup.
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

func (c *dbConfig) register(s *settings) {
	s.add(secret(stringSetting(&c.DatabaseURL, "DATABASE_URL", "database-url", databaseURLDefault, "URL",
		"PostgreSQL URL; sslmode and search_path go in its query", checkDatabaseURL)))
	s.add(stringSetting(&c.LogFormat, "LOG_FORMAT", "log-format", "text", "text|json",
		"text (colored on a terminal) or json", oneOf("text", "json")))
	s.add(&setting{env: "LOG_LEVEL", flag: "log-level", def: "info", meta: "LEVEL",
		usage: "debug, info, warn or error", parse: func(v string) error {
			if c.LogLevel.UnmarshalText([]byte(v)) != nil {
				return errors.New("must be debug, info, warn or error")
			}
			return nil
		}})
}

// commonConfig is what every command that talks to both servers needs.
type commonConfig struct {
	dbConfig
	RedisURL string
	Stream   string
}

func (c *commonConfig) register(s *settings) {
	c.dbConfig.register(s)
	s.add(secret(stringSetting(&c.RedisURL, "REDIS_URL", "redis-url", redisURLDefault, "URL",
		"Redis URL; rediss:// for TLS", checkRedisURL)))
	s.add(stringSetting(&c.Stream, "JOB_REVIEW_QUEUE_NAME", "stream", relay.StreamDefault, "NAME",
		"Redis stream of jobs to review", notEmpty))
}

// relayConfig is what the relay reads.
type relayConfig struct {
	Group          string
	BatchSize      int
	Workers        int
	PollInterval   time.Duration
	PollOnly       bool
	CycleTimeout   time.Duration
	DedupTTL       time.Duration
	ReenqueueAfter time.Duration
	MaxStreamLag   int
}

func (c *relayConfig) register(s *settings) {
	s.add(stringSetting(&c.Group, "JOB_REVIEW_GROUP", "group", consumer.GroupDefault, "NAME",
		"consumer group (its lag holds the relay back)", notEmpty))
	s.add(intSetting(&c.BatchSize, "BATCH_SIZE", "batch-size", relay.BatchSizeDefault, 1, relay.BatchSizeMax,
		"jobs claimed, published and committed per cycle"))
	s.add(intSetting(&c.Workers, "RELAY_WORKERS", "workers", relay.WorkersDefault, 1, 16,
		"cycles run side by side while a backlog drains, each on its own connection"))
	poll := durationSetting(&c.PollInterval, "POLL_INTERVAL", "poll-interval", relay.PollIntervalDefault, 10*time.Millisecond,
		"safety-net poll under LISTEN/NOTIFY (POLL_INTERVAL_MINUTES of the old poller is honoured)")
	if _, ok := s.env.lookup("POLL_INTERVAL"); !ok {
		if m, ok := s.env.lookup("POLL_INTERVAL_MINUTES"); ok {
			parse := poll.parse
			poll.parse = func(v string) error {
				if poll.source == "flag" {
					return parse(v)
				}
				f, err := strconv.ParseFloat(strings.TrimSpace(m), 64)
				if err != nil || f <= 0 {
					return errors.New("POLL_INTERVAL_MINUTES must be a positive number of minutes")
				}
				c.PollInterval = time.Duration(f * float64(time.Minute))
				return nil
			}
			poll.value, poll.source = m, "env"
		}
	}
	s.add(poll)
	s.add(boolSetting(&c.PollOnly, "POLL_ONLY", "poll-only", false,
		"no LISTEN/NOTIFY, for poolers that break it (PgBouncer transaction mode)"))
	s.add(durationSetting(&c.CycleTimeout, "CYCLE_TIMEOUT", "cycle-timeout", relay.CycleTimeoutDefault, 10*time.Millisecond,
		"longest a cycle may hold row locks (also the session's statement and idle-in-transaction timeouts)"))
	s.add(&setting{env: "DEDUP_TTL", flag: "dedup-ttl", meta: "DURATION",
		usage: "how long records of uncommitted batches are kept (default 2 × (CYCLE_TIMEOUT + POLL_INTERVAL))",
		parse: func(v string) error {
			if v == "" {
				c.DedupTTL = 0
				return nil
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New(`must be a positive duration such as "10m"`)
			}
			c.DedupTTL = d
			return nil
		}})
	s.add(&setting{env: "REENQUEUE_AFTER", flag: "reenqueue-after", def: relay.ReenqueueAfterDefault.String(), meta: "DURATION",
		usage: "age after which an in_review job whose stream entry is gone goes back to pending_review; 0 disables",
		parse: func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errors.New(`must be a duration such as "5m", or 0 to disable`)
			}
			c.ReenqueueAfter = d
			if d == 0 {
				c.ReenqueueAfter = -1
			}
			return nil
		}})
	s.add(intSetting(&c.MaxStreamLag, "MAX_STREAM_LAG", "max-stream-lag", relay.MaxStreamLagDefault, 0, 1<<40,
		"entries the group may leave unread before the relay pauses; 0 disables"))
}

// relayConfig turns the settings into the relay package's Config.
func (c *relayConfig) config(stream string, logger *slog.Logger) relay.Config {
	cfg := relay.Config{
		Stream:         stream,
		Group:          c.Group,
		BatchSize:      c.BatchSize,
		Workers:        c.Workers,
		PollInterval:   c.PollInterval,
		PollOnly:       c.PollOnly,
		CycleTimeout:   c.CycleTimeout,
		DedupTTL:       c.DedupTTL,
		ReenqueueAfter: c.ReenqueueAfter,
		MaxStreamLag:   int64(c.MaxStreamLag),
		Logger:         logger,
	}
	if c.MaxStreamLag == 0 {
		cfg.MaxStreamLag = -1
	}
	return cfg
}

// consumerConfig is what a consumer reads.
type consumerConfig struct {
	Group           string
	Handler         string
	Concurrency     int
	ReclaimIdle     time.Duration
	MaxDeliveries   int
	HandlerTimeout  time.Duration
	ShutdownTimeout time.Duration
}

// register adds the consumer's settings; withGroup is false when the relay
// settings already added JOB_REVIEW_GROUP (jobrelay run).
func (c *consumerConfig) register(s *settings, withGroup bool) {
	if withGroup {
		s.add(stringSetting(&c.Group, "JOB_REVIEW_GROUP", "group", consumer.GroupDefault, "NAME",
			"consumer group", notEmpty))
	}
	s.add(stringSetting(&c.Handler, "HANDLER", "handler", "log", "SPEC",
		`review handler: "log", "exec:CMD" (job JSON on stdin) or "http:URL" (job JSON POSTed)`, nil))
	s.add(intSetting(&c.Concurrency, "CONCURRENCY", "concurrency", consumer.ConcurrencyDefault, 1, 10_000,
		"handlers running at once"))
	s.add(durationSetting(&c.ReclaimIdle, "RECLAIM_IDLE", "reclaim-idle", consumer.ReclaimIdleDefault, 10*time.Millisecond,
		"idle time after which a delivered job is retried by any consumer"))
	s.add(intSetting(&c.MaxDeliveries, "MAX_DELIVERIES", "max-deliveries", consumer.MaxDeliveriesDefault, 1, 1000,
		"deliveries before a job is dead-lettered and marked failed"))
	s.add(durationSetting(&c.HandlerTimeout, "HANDLER_TIMEOUT", "handler-timeout", consumer.HandlerTimeoutDefault, time.Millisecond,
		"longest one handler call may run"))
	s.add(durationSetting(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "shutdown-timeout", consumer.ShutdownTimeoutDefault, 0,
		"how long handlers in flight may finish after SIGTERM"))
}

// config turns the settings into the consumer package's Config.
func (c *consumerConfig) config(stream string, handler consumer.Handler, logger *slog.Logger) consumer.Config {
	return consumer.Config{
		Handler:         handler,
		Stream:          stream,
		Group:           c.Group,
		Concurrency:     c.Concurrency,
		ReclaimIdle:     c.ReclaimIdle,
		MaxDeliveries:   c.MaxDeliveries,
		HandlerTimeout:  c.HandlerTimeout,
		ShutdownTimeout: c.ShutdownTimeout,
		Logger:          logger,
	}
}

// secret marks a URL setting whose value must not be printed whole.
func secret(st *setting) *setting {
	st.redact = db.RedactURL
	return st
}

// checks

func notEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
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

func checkListenAddr(v string) error {
	if v == "" {
		return nil // disabled
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return errors.New(`must be host:port or :port (":9090", "127.0.0.1:9090"), or empty to disable`)
	}
	return nil
}
