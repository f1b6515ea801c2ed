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
			help: "PostgreSQL. `sslmode` and `search_path` go in the query. Logged with the password hidden.", check: checkDatabaseURL, secret: db.RedactURL},
		{env: "LOG_FORMAT", flag: "log-format", ptr: &c.LogFormat, def: "text", meta: "text|json",
			help: "`text` (colored on a terminal, through tint) or `json`", check: oneOf("text", "json")},
		{env: "LOG_LEVEL", flag: "log-level", ptr: &c.LogLevel, def: "info", meta: "LEVEL",
			help: "`debug`, `info`, `warn` or `error`"},
	}
}

// commonConfig is what every command that talks to both servers needs.
type commonConfig struct {
	dbConfig
	RedisURL   string
	Stream     string
	Partitions int
}

func (c *commonConfig) bindings() []*binding {
	return append(c.dbConfig.bindings(),
		&binding{env: "REDIS_URL", flag: "redis-url", ptr: &c.RedisURL, def: redisURLDefault, meta: "URL",
			help: "Redis; `rediss://` for TLS. `?addr=host:port&addr=…` names more Redis Cluster nodes (one node that says `cluster_enabled:1` is detected too); " +
				"`?master_name=NAME` goes through Sentinel, the host and each `addr=` being sentinels (go-redis's URL conventions; see [Scaling out](#scaling-out)). " +
				"Logged with the password hidden.", check: checkRedisURL, secret: db.RedactURL},
		&binding{env: "JOB_REVIEW_QUEUE_NAME", flag: "stream", field: "Stream", ptr: &c.Stream, def: relay.StreamDefault, meta: "NAME",
			help: "the stream of jobs to review; dead letters go to `{<name>}:dead`"},
		&binding{env: "STREAM_PARTITIONS", flag: "partitions", field: "Partitions", ptr: &c.Partitions, def: relay.PartitionsDefault, meta: "N",
			help: fmt.Sprintf("streams jobs are spread over by a hash of the job id: `1` is the stream itself, more are `<name>:0` … `<name>:<n-1>`, "+
				"which Redis Cluster spreads over its nodes (1 to %d; see [Scaling out](#scaling-out))", relay.PartitionsMax),
			check: intRange(1, relay.PartitionsMax)},
	)
}

// documentedBindings is every variable the binary reads, once, in the
// order README's settings table lists them: connections and names, the
// relay's, the consumers', then logging and the listener. The table is
// made from it (go test ./cmd/jobrelay -run TestReadmeSettingsTable -update).
func documentedBindings() []*binding {
	var (
		common commonConfig
		serve  serveConfig
		spec   string
	)
	all := slices.Concat(common.bindings(), relayBindings(&relay.Config{}),
		consumerBindings(&consumer.Config{}, &spec, false), serve.bindings())
	last := func(b *binding) bool {
		return strings.HasPrefix(b.env, "LOG_") || b.env == "METRICS_ADDR" || strings.HasPrefix(b.env, "UI_")
	}
	return slices.Concat(slices.DeleteFunc(slices.Clone(all), last), slices.DeleteFunc(all, func(b *binding) bool { return !last(b) }))
}

// relayBindings binds the relay's variables to the fields of c. Stream is
// bound by commonConfig.
func relayBindings(c *relay.Config) []*binding {
	return []*binding{
		{env: "JOB_REVIEW_GROUP", flag: "group", field: "Group", ptr: &c.Group, def: relay.GroupDefault, meta: "NAME",
			help: "the consumer group (its lag holds the relay back)"},
		{env: "BATCH_SIZE", flag: "batch-size", field: "BatchSize", ptr: &c.BatchSize, def: relay.BatchSizeDefault, meta: "N",
			help: fmt.Sprintf("jobs claimed, published and committed per cycle (1 to %d); while a backlog drains, a transaction carries two such batches", relay.BatchSizeMax)},
		{env: "RELAY_WORKERS", flag: "workers", field: "Workers", ptr: &c.Workers, def: relay.WorkersDefault, meta: "N",
			help: fmt.Sprintf("cycles a relay runs side by side while a backlog drains, each on its own connection: one commits while another publishes (1 to %d)", relay.WorkersMax)},
		{env: "POLL_INTERVAL", flag: "poll-interval", field: "PollInterval", ptr: &c.PollInterval, def: relay.PollIntervalDefault, meta: "DURATION",
			help: fmt.Sprintf("the safety-net poll under LISTEN/NOTIFY, jittered ±10%%, and the reaper's tick (at least %s)", relay.PollIntervalMin)},
		{env: "POLL_INTERVAL_MINUTES", field: "PollInterval", ptr: &c.PollInterval, minutesOf: "POLL_INTERVAL", meta: "MINUTES",
			help: "the old poller's setting, in minutes, honoured when `POLL_INTERVAL` is not set; same bounds"},
		{env: "POLL_ONLY", flag: "poll-only", field: "PollOnly", ptr: &c.PollOnly, def: false,
			help: "no LISTEN/NOTIFY, for poolers that break it (PgBouncer in transaction mode)"},
		{env: "LISTEN_DATABASE_URL", flag: "listen-database-url", field: "ListenDatabaseURL", ptr: &c.ListenDatabaseURL, meta: "URL",
			help:  "PostgreSQL for the relay's LISTEN connection alone, when `DATABASE_URL` goes through PgBouncer in transaction mode (see Scaling out); same database and `search_path`. Logged with the password hidden. Empty: `DATABASE_URL`",
			check: checkOptionalDatabaseURL, secret: db.RedactURL},
		{env: "CYCLE_TIMEOUT", flag: "cycle-timeout", field: "CycleTimeout", ptr: &c.CycleTimeout, def: relay.CycleTimeoutDefault, meta: "DURATION",
			help: "the longest a cycle (one transaction, of one batch or two) holds its row locks; also each cycle transaction's `statement_timeout` and `idle_in_transaction_session_timeout` (`SET LOCAL`)"},
		{env: "DEDUP_TTL", flag: "dedup-ttl", field: "DedupTTL", ptr: &c.DedupTTL, defText: "2 × (`CYCLE_TIMEOUT` + `POLL_INTERVAL`)", meta: "DURATION",
			help: "how long the record of a published but uncommitted batch is kept"},
		{env: "REENQUEUE_AFTER", flag: "reenqueue-after", field: "ReenqueueAfter", ptr: &c.ReenqueueAfter, def: relay.ReenqueueAfterDefault, meta: "DURATION",
			help: "an `in_review` job older than this whose stream entry is gone goes back to `pending_review`; `0` disables"},
		{env: "ARCHIVE_AFTER", flag: "archive-after", field: "ArchiveAfter", ptr: &c.ArchiveAfter, defText: "0", meta: "DURATION",
			help: "jobs reviewed longer ago than this (`30d`, `1d12h`; at least `1m`) are moved to `archived` by the relays, 1000 per statement, once a minute (see Scaling out); `0` disables", days: true},
		{env: "MAX_STREAM_LAG", flag: "max-stream-lag", field: "MaxStreamLag", ptr: &c.MaxStreamLag, meta: "N",
			defText: fmt.Sprintf("`%d` (`%d` with `TENANT_FAIR`)", relay.MaxStreamLagDefault, relay.MaxStreamLagFairDefault),
			help:    "entries the group may leave unread before the relay pauses; `0` disables. Keep it short (a few seconds of reviews) for priorities and tenants to decide end to end (see Priorities and tenants)"},
		{env: "PRIORITY_STRICT", flag: "priority-strict", field: "PriorityStrict", ptr: &c.PriorityStrict, def: false,
			help: "claim strictly by priority; by default one claim in 10 takes the oldest jobs whatever their priority, so lower priorities keep flowing"},
		{env: "TENANT_FAIR", flag: "tenant-fair", field: "TenantFair", ptr: &c.TenantFair, def: false,
			help: "share each claim between the tenants with pending jobs, so one tenant's flood does not delay the others"},
		{env: "TENANT_WEIGHTS", flag: "tenant-weights", field: "TenantWeights", ptr: &c.TenantWeights, meta: "T=W,...",
			help: fmt.Sprintf("tenants' weights in fair claims, `acme=3,globex=2` (unlisted tenants weigh 1, at most %d); turns `TENANT_FAIR` on", relay.TenantWeightMax)},
		{env: "TENANT_MAX_IN_FLIGHT", flag: "tenant-max-in-flight", field: "TenantMaxInFlight", ptr: &c.TenantMaxInFlight, def: 0, meta: "N",
			help: "most jobs `in_review` per tenant (published, not yet reviewed); `0` sets no cap; turns `TENANT_FAIR` on"},
	}
}

// consumerBindings binds the consumer's variables to the fields of c, and
// HANDLER to spec. With group false, JOB_REVIEW_GROUP is bound by the
// relay's bindings (jobrelay run).
func consumerBindings(c *consumer.Config, spec *string, group bool) []*binding {
	var bs []*binding
	if group {
		bs = append(bs, &binding{env: "JOB_REVIEW_GROUP", flag: "group", field: "Group", ptr: &c.Group, def: consumer.GroupDefault, meta: "NAME",
			help: "the consumer group"})
	}
	return append(bs,
		&binding{env: "HANDLER", flag: "handler", field: "Handler", ptr: spec, def: consumer.HandlerSpecDefault, meta: "SPEC",
			help: "the review handler: `log`, `exec:CMD` (job JSON on stdin, exit 0 = success) or `http:URL` (job JSON POSTed, 2xx = success)"},
		&binding{env: "CONCURRENCY", flag: "concurrency", field: "Concurrency", ptr: &c.Concurrency, def: consumer.ConcurrencyDefault, meta: "N",
			help: fmt.Sprintf("handlers running at once per consumer (1 to %d)", consumer.ConcurrencyMax)},
		&binding{env: "RECLAIM_IDLE", flag: "reclaim-idle", field: "ReclaimIdle", ptr: &c.ReclaimIdle, def: consumer.ReclaimIdleDefault, meta: "DURATION",
			help: "a delivered job without a result for this long is retried, by any consumer"},
		&binding{env: "MAX_DELIVERIES", flag: "max-deliveries", field: "MaxDeliveries", ptr: &c.MaxDeliveries, def: consumer.MaxDeliveriesDefault, meta: "N",
			help: "deliveries before a job is dead-lettered and marked `failed`"},
		&binding{env: "HANDLER_TIMEOUT", flag: "handler-timeout", field: "HandlerTimeout", ptr: &c.HandlerTimeout, def: consumer.HandlerTimeoutDefault, meta: "DURATION",
			help: "the longest one handler call may run"},
		&binding{env: "SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", field: "ShutdownTimeout", ptr: &c.ShutdownTimeout, def: consumer.ShutdownTimeoutDefault, meta: "DURATION",
			help: "how long handlers in flight may finish after SIGTERM; `0` cancels them at once"},
	)
}

// uiBindings binds the dashboard's settings (served at /ui on the metrics
// listener).
func uiBindings(c *serveConfig) []*binding {
	return []*binding{
		{env: "UI_WRITE", flag: "ui-write", ptr: &c.UIWrite, def: false,
			help: "`true` shows and accepts the dashboard's actions (retry a failed job, retry all), as CSRF-protected POSTs; read-only otherwise"},
		{env: "UI_AUTH", flag: "ui-auth", ptr: &c.UIAuth, meta: "USER:PASSWORD",
			help:  "`user:password`: HTTP basic auth for the dashboard at `/ui` (never logged); keep the listener on a private address either way",
			check: checkUIAuth, secret: redactUIAuth},
	}
}

// checks of the CLI's own settings

// checkUIAuth accepts user:password, both not empty, or nothing.
func checkUIAuth(v string) error {
	if v == "" {
		return nil
	}
	if user, password, ok := strings.Cut(v, ":"); !ok || user == "" || password == "" {
		return errors.New("must be user:password, both not empty")
	}
	return nil
}

// redactUIAuth hides the password of a UI_AUTH value.
func redactUIAuth(v string) string {
	user, _, ok := strings.Cut(v, ":")
	if !ok {
		return "xxxxx"
	}
	return user + ":xxxxx"
}

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
	cfg, err := pgxpool.ParseConfig(v)
	if err != nil {
		return errors.New("is not a valid PostgreSQL URL")
	}
	return db.CheckExecMode(cfg.ConnConfig)
}

// checkOptionalDatabaseURL is checkDatabaseURL for a URL that may be left
// empty.
func checkOptionalDatabaseURL(v string) error {
	if v == "" {
		return nil
	}
	return checkDatabaseURL(v)
}

var urlScheme = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*)://`)

func checkRedisURL(v string) error {
	if _, err := parseRedisURL(v); err != nil {
		return errors.New("is not a valid Redis URL (redis://[user:password@]host:port/db, rediss:// for TLS, " +
			"?addr=host:port for more cluster nodes, ?master_name=NAME for Sentinel)")
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
