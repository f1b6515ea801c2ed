package relay

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobrelay/jobrelay/internal/stream"
)

// Defaults of Config.
const (
	StreamDefault         = "job_review"
	GroupDefault          = "job_review_workers"
	BatchSizeDefault      = 100
	PollIntervalDefault   = 5 * time.Minute
	CycleTimeoutDefault   = 30 * time.Second
	ReenqueueAfterDefault = 5 * time.Minute
	MaxStreamLagDefault   = 100_000
	// MaxStreamLagFairDefault is MaxStreamLag's default with fair claims
	// (TenantFair): a few seconds of reviews, so that the stream cannot
	// hold one tenant's flood and the claims' order decides.
	MaxStreamLagFairDefault = 1000
	// AgingEvery is how often a relay's claim takes the oldest jobs
	// whatever their priority, unless PriorityStrict: one claim in
	// AgingEvery.
	AgingEvery            = 10
	MaxMemoryRatioDefault = 0.8
	MaxEntryBytesDefault  = 1 << 20
	JobLogLimitDefault    = 10
	// ArchiveAfterDefault is 0: the archiver is off unless asked for.
	ArchiveAfterDefault = 0
	WorkersDefault      = 2
	PartitionsDefault   = 1

	// stalledAfterDefault is how long a paused relay may see no progress
	// before Ready reports it: longer than consumers take to read an entry
	// when their handlers are slow, short enough to page someone.
	stalledAfterDefault = 2 * time.Minute

	// BatchSizeMax bounds BatchSize: bigger batches gain nothing and hold
	// more row locks for longer.
	BatchSizeMax = 5000
)

// Config configures a Relay. The zero value of each field means its default;
// -1 disables the features that say so.
type Config struct {
	// Stream is the Redis stream jobs are published to. Defaults to
	// "job_review".
	Stream string

	// Partitions is the number of streams jobs are spread over, by a
	// stable hash of the job id: 1 publishes to Stream itself, more to
	// "<Stream>:0" to "<Stream>:<n-1>", which Redis Cluster places on
	// different nodes. Every relay and consumer of a pipeline should use
	// the same number; while they differ (a rolling change), jobs in
	// streams that are no longer partitions are still read by consumers
	// and reaped by relays. At most PartitionsMax. Defaults to 1.
	Partitions int

	// Group is the consumer group whose pending entries the reaper looks
	// for. (Backpressure counts every group that reads the stream, see
	// MaxStreamLag.) Defaults to "job_review_workers".
	Group string

	// BatchSize is the number of jobs claimed, published and committed per
	// cycle, at most BatchSizeMax. Defaults to 100.
	BatchSize int

	// Workers is the number of cycles the relay runs side by side while it
	// drains a backlog, each on a PostgreSQL connection of its own: while
	// one waits for Redis, another commits. Without a backlog one cycle
	// runs at a time. 1 runs every cycle in turn; at most WorkersMax.
	// Defaults to 2.
	Workers int

	// PollInterval is the safety net under LISTEN/NOTIFY: the relay runs a
	// cycle, and the reaper, at least this often (jittered by ±10%). At
	// least PollIntervalMin. Defaults to 5 minutes.
	PollInterval time.Duration

	// PollOnly turns off LISTEN/NOTIFY, for connection poolers that break it
	// (PgBouncer in transaction mode). New jobs then wait up to PollInterval.
	// ListenDatabaseURL keeps notifications behind such a pooler instead.
	PollOnly bool

	// ListenDatabaseURL, if set, is the PostgreSQL URL (or key=value DSN)
	// the relay's LISTEN connection uses instead of the pool's. Behind
	// PgBouncer in transaction mode, which breaks LISTEN, it points at
	// PostgreSQL itself, so that new jobs still wake the relay at once
	// while its cycles go through the pooler. It must reach the same
	// database and schema (search_path) as the pool: notifications name
	// the schema of the jobs table. It cannot be combined with PollOnly.
	// Defaults to "": LISTEN uses the pool's configuration.
	ListenDatabaseURL string

	// CycleTimeout bounds one cycle, and so how long the relay holds row
	// locks while Redis stalls. Each cycle's transaction also sets it as
	// its statement_timeout and idle_in_transaction_session_timeout (SET
	// LOCAL, so it holds behind a transaction pooler), so a relay that
	// hangs or vanishes mid-cycle releases its locks after it. Defaults to
	// 30 seconds.
	CycleTimeout time.Duration

	// DedupTTL is how long the record of a published batch outlives a
	// relay that died before committing it, so that whoever claims those
	// jobs next finds the entries already added. It must cover the time
	// until another relay claims them: the dead relay's locks (CycleTimeout)
	// and the next wake-up (PollInterval at worst). Records of committed
	// batches are deleted at once, so a long TTL costs no memory in normal
	// operation. Defaults to 2 × (CycleTimeout + PollInterval).
	DedupTTL time.Duration

	// ReenqueueAfter is how long a job may stay in_review before the reaper
	// checks that its stream entry still exists, and sends it back to
	// pending_review if not. -1 disables the reaper. Defaults to 5 minutes.
	ReenqueueAfter time.Duration

	// ArchiveAfter, if positive, turns the archiver on: every minute it
	// moves the jobs reviewed more than ArchiveAfter ago (by updated_at) to
	// archived, in batches of 1000, each one short statement of its own
	// that skips rows other transactions hold, until none is left (see
	// Archive). Archived jobs leave the partial indexes of the hot paths
	// and the reviewed count, and may be moved elsewhere or deleted by the
	// application. At least ArchiveAfterMin. 0 or -1 disables it.
	// Defaults to 0: disabled.
	ArchiveAfter time.Duration

	// MaxStreamLag is the number of entries a consumer group may have left
	// unread before the relay stops claiming; the backlog then waits in
	// PostgreSQL; with partitions, it bounds their total. Every group
	// reading the stream counts, the furthest behind decides; without a group, every entry is unread. A claim
	// takes no more jobs than the room left, so one relay never passes the
	// bound. -1 disables the check. Defaults to 100000.
	MaxStreamLag int64

	// MaxStreamLag also decides how far priorities and fair claims reach:
	// they order the claims, and a job claimed waits behind the stream's
	// unread entries. Set it to a few seconds' worth of reviews (1000, say)
	// for an urgent job to overtake a backlog end to end. With TenantFair
	// it defaults to MaxStreamLagFairDefault.

	// PriorityStrict claims jobs strictly by priority (the jobs column,
	// higher first): a lower priority waits as long as a higher one is
	// pending. By default one claim in AgingEvery takes the oldest pending
	// jobs whatever their priority, so that lower priorities keep about a
	// tenth of the throughput under a constant load of higher ones.
	PriorityStrict bool

	// TenantFair shares each claim between the tenants (the jobs column;
	// NULL is the default tenant) that have pending jobs, in equal shares
	// or by TenantWeights (at least 10 jobs times the weight; with more
	// tenants, claims take turns), each tenant's jobs by priority: one
	// tenant's flood does not delay another's jobs by more than the
	// stream's lag and a few claims. Setting TenantWeights or
	// TenantMaxInFlight turns it on. Defaults to false: claims take the
	// highest priority first, whatever the tenant.
	TenantFair bool

	// TenantWeights gives tenants a bigger share of each claim: a tenant of
	// weight 3 gets three jobs for every job of a tenant of weight 1.
	// Unlisted tenants weigh 1.
	TenantWeights map[string]int

	// TenantMaxInFlight caps each tenant's jobs in_review, published and
	// not yet reviewed, so that one tenant cannot take every handler of a
	// shared review service: claims pass over a tenant at its cap until
	// its jobs are reviewed. 0 or -1 sets no cap.
	TenantMaxInFlight int

	// MaxMemoryRatio is the share of Redis maxmemory past which the relay
	// stops claiming. Near it, claims shrink to the entries that the
	// memory left is estimated to hold; over it, the relay first trims what
	// every group is done with. It has no effect on a Redis without
	// maxmemory. -1 disables the check. Defaults to 0.8.
	MaxMemoryRatio float64

	// MaxEntryBytes bounds the size of one stream entry. A job whose entry
	// would be larger is marked failed with a last_error that says so, and
	// the jobs behind it go on. Defaults to 1 MiB.
	MaxEntryBytes int

	// JobLogLimit is the largest batch whose jobs are each logged at Info
	// ("Enqueued job for review"); in bigger batches, which only happen
	// when a backlog drains, they are logged at Debug, so logging does not
	// cost more than relaying. -1 logs every job at Info. Defaults to 10.
	JobLogLimit int

	// Logger receives the relay's logs. Defaults to discarding them.
	Logger *slog.Logger

	// Registerer is where New registers the relay's metrics, all named
	// jobrelay_relay_*. Two relays cannot register on one Registerer as
	// is: wrap it for each with prometheus.WrapRegistererWith and a label
	// of its own. Defaults to nil: the metrics are not registered.
	Registerer prometheus.Registerer

	// archiveInterval is the archiver's tick. Tests shorten it.
	archiveInterval time.Duration

	// archiveBatchSize is the most jobs one archiving statement moves.
	// Tests shorten it.
	archiveBatchSize int

	// pressureInterval is the longest the relay goes on the last reading
	// of the pressure while far from its limits (near them it reads before
	// every claim), and how often it reads again while paused. Tests
	// shorten it.
	pressureInterval time.Duration

	// stalledAfter is how long the relay may stay paused without progress
	// (see Relay.Ready) before it reports itself not ready. Tests shorten it.
	stalledAfter time.Duration
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c *Config) withDefaults() *Config {
	out := *c
	out.Stream = cmp.Or(out.Stream, StreamDefault)
	out.Group = cmp.Or(out.Group, GroupDefault)
	out.BatchSize = cmp.Or(out.BatchSize, BatchSizeDefault)
	out.Workers = cmp.Or(out.Workers, WorkersDefault)
	out.Partitions = cmp.Or(out.Partitions, PartitionsDefault)
	out.PollInterval = cmp.Or(out.PollInterval, PollIntervalDefault)
	out.CycleTimeout = cmp.Or(out.CycleTimeout, CycleTimeoutDefault)
	out.DedupTTL = cmp.Or(out.DedupTTL, 2*(out.CycleTimeout+out.PollInterval))
	out.ReenqueueAfter = cmp.Or(out.ReenqueueAfter, ReenqueueAfterDefault)
	out.TenantFair = out.TenantFair || len(out.TenantWeights) > 0 || out.TenantMaxInFlight > 0
	if out.TenantFair {
		out.MaxStreamLag = cmp.Or(out.MaxStreamLag, MaxStreamLagFairDefault)
	}
	out.MaxStreamLag = cmp.Or(out.MaxStreamLag, MaxStreamLagDefault)
	out.MaxMemoryRatio = cmp.Or(out.MaxMemoryRatio, MaxMemoryRatioDefault)
	out.MaxEntryBytes = cmp.Or(out.MaxEntryBytes, MaxEntryBytesDefault)
	out.JobLogLimit = cmp.Or(out.JobLogLimit, JobLogLimitDefault)
	out.archiveInterval = cmp.Or(out.archiveInterval, archiveIntervalDefault)
	out.archiveBatchSize = cmp.Or(out.archiveBatchSize, ArchiveBatchSizeDefault)
	out.pressureInterval = cmp.Or(out.pressureInterval, 250*time.Millisecond)
	out.stalledAfter = cmp.Or(out.stalledAfter, stalledAfterDefault)
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return &out
}

// Validate reports the first field of c that is out of range, after
// filling in the defaults as New does, as a *ConfigError naming the field.
// New validates too; Validate lets a program check a configuration before
// it connects to anything.
func (c *Config) Validate() error { return c.withDefaults().validate() }

// PollIntervalMin and CycleTimeoutMin are the shortest PollInterval and
// CycleTimeout: shorter ones would poll or time out faster than a round
// trip to the servers.
const (
	PollIntervalMin  = 10 * time.Millisecond
	CycleTimeoutMin  = 10 * time.Millisecond
	WorkersMax       = 16
	MaxEntryBytesMin = 1024
	PartitionsMax    = 1024
	TenantWeightMax  = 1000
	// ArchiveAfterMin is the shortest ArchiveAfter: a job just reviewed
	// stays visible as reviewed for at least this long.
	ArchiveAfterMin = time.Minute
)

// validate reports the first field that is out of range.
func (c *Config) validate() error {
	if err := stream.CheckName(c.Stream); err != nil {
		return configErrorf("Stream", "is not usable: %v", err)
	}
	switch {
	case c.Partitions < 1 || c.Partitions > PartitionsMax:
		return configErrorf("Partitions", "must be between 1 and %d", PartitionsMax)
	case c.BatchSize < 1 || c.BatchSize > BatchSizeMax:
		return configErrorf("BatchSize", "must be between 1 and %d", BatchSizeMax)
	case c.Workers < 1 || c.Workers > WorkersMax:
		return configErrorf("Workers", "must be between 1 and %d", WorkersMax)
	case c.PollInterval < PollIntervalMin:
		return configErrorf("PollInterval", "must be at least %s", PollIntervalMin)
	case c.ListenDatabaseURL != "" && c.PollOnly:
		return configErrorf("ListenDatabaseURL", "cannot be combined with PollOnly: a relay that only polls does not LISTEN")
	case c.ListenDatabaseURL != "" && !validDatabaseURL(c.ListenDatabaseURL):
		return configErrorf("ListenDatabaseURL", "is not a valid PostgreSQL URL")
	case c.CycleTimeout < CycleTimeoutMin:
		return configErrorf("CycleTimeout", "must be at least %s", CycleTimeoutMin)
	case c.DedupTTL < c.CycleTimeout:
		return configErrorf("DedupTTL", "must be at least CycleTimeout (%s): records must outlive a dead relay's locks", c.CycleTimeout)
	case c.ReenqueueAfter < 0 && c.ReenqueueAfter != -1:
		return configErrorf("ReenqueueAfter", "must be positive, or -1 to disable the reaper")
	case c.MaxStreamLag < -1:
		return configErrorf("MaxStreamLag", "must be positive, or -1 to disable it")
	case c.MaxMemoryRatio != -1 && (c.MaxMemoryRatio <= 0 || c.MaxMemoryRatio > 1):
		return configErrorf("MaxMemoryRatio", "must be in (0, 1], or -1 to disable it")
	case c.ArchiveAfter < -1 || c.ArchiveAfter > 0 && c.ArchiveAfter < ArchiveAfterMin:
		return configErrorf("ArchiveAfter", "must be at least %s, or -1 (or 0) to disable the archiver", ArchiveAfterMin)
	case c.MaxEntryBytes < MaxEntryBytesMin:
		return configErrorf("MaxEntryBytes", "must be at least %d", MaxEntryBytesMin)
	case c.TenantMaxInFlight < -1:
		return configErrorf("TenantMaxInFlight", "must be positive, or -1 for no cap")
	}
	for name, w := range c.TenantWeights {
		if name == "" {
			return configErrorf("TenantWeights", "names a tenant with an empty name")
		}
		if w < 1 || w > TenantWeightMax {
			return configErrorf("TenantWeights", "gives tenant %q weight %d: must be between 1 and %d", name, w, TenantWeightMax)
		}
	}
	return nil
}

// validDatabaseURL reports whether pgx can read s as a connection string.
// The error is dropped: pgx quotes the string, password and all.
func validDatabaseURL(s string) bool {
	_, err := pgx.ParseConfig(s)
	return err == nil
}

// ConfigError is a Config field that is out of range. Its message names the
// field: "BatchSize must be between 1 and 5000".
type ConfigError struct {
	// Field is the name of the Config field, as in "BatchSize".
	Field string
	// Reason is what is wrong with it, as in "must be between 1 and 5000".
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string { return e.Field + " " + e.Reason }

func configErrorf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
