package inspect

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RefreshDefault is how often a Collector reads the pipeline's state.
const RefreshDefault = 15 * time.Second

// CollectorConfig configures a Collector.
type CollectorConfig struct {
	// Stream is the pipeline's stream. Defaults to "job_review".
	Stream string
	// Partitions is the number of streams the pipeline spreads jobs over
	// (see Options.Partitions); the gauges show their sums.
	Partitions int
	// Interval is how often Run reads the pipeline's state. Defaults to
	// RefreshDefault.
	Interval time.Duration
	// Logger receives a line when reading starts and stops failing.
	// Defaults to discarding them.
	Logger *slog.Logger
	// ObserveFunc, if set, is given every snapshot Run takes, for another
	// reader of the same state (the dashboard's throughput chart) to add
	// no load of its own. It must not block.
	ObserveFunc func(*Snapshot)
}

// Collector exports the answers to "are we keeping up?" as gauges: the
// backlog in the table, the stream, each group's lag and pending entries,
// the dead letters. A scrape reads the latest snapshot, refreshed every
// interval by Run, so scrapes add no load to the servers. Ages are computed
// at scrape time, so they keep growing between refreshes.
type Collector struct {
	pool *pgxpool.Pool
	rdb  redis.UniversalClient
	cfg  CollectorConfig

	mu   sync.Mutex
	snap *Snapshot

	pending, oldestPending, inReview, oldestInReview *prometheus.Desc
	streamLength, entriesAdded, deadLetters          *prometheus.Desc
	lag, groupPending, oldestEntry, consumers        *prometheus.Desc
	maxIdle                                          *prometheus.Desc
	up                                               *prometheus.Desc
	inReviewUntracked                                *prometheus.Desc
	problems                                         *prometheus.Desc
	// With partitions, each one's: stream, lag and pending of each group,
	// dead letters.
	partLength, partLag, partPending, partDead *prometheus.Desc

	pendingByPriority, oldestByPriority *prometheus.Desc
	pendingByTenant, oldestByTenant     *prometheus.Desc
}

// NewCollector returns a Collector of the pipeline that pool and rdb reach,
// with no snapshot yet: Run takes them. Register it on a
// prometheus.Registerer.
func NewCollector(pool *pgxpool.Pool, rdb redis.UniversalClient, cfg CollectorConfig) *Collector {
	cfg.Stream = cmp.Or(cfg.Stream, streamDefault)
	cfg.Interval = cmp.Or(cfg.Interval, RefreshDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("jobrelay_"+name, help, labels, nil)
	}
	return &Collector{
		pool:           pool,
		rdb:            rdb,
		cfg:            cfg,
		pending:        d("jobs_pending", "Jobs in pending_review."),
		oldestPending:  d("jobs_oldest_pending_age_seconds", "Age of the oldest pending_review job (0 when none)."),
		inReview:       d("jobs_in_review", "Jobs in in_review."),
		oldestInReview: d("jobs_oldest_in_review_age_seconds", "Time since the oldest in_review job was published, or last updated if it has no enqueued_at (0 when none)."),
		streamLength:   d("stream_length", "Entries in the review stream."),
		entriesAdded:   d("stream_entries_added", "Entries ever added to the review stream."),
		deadLetters:    d("dead_letter_length", "Entries in the dead-letter stream."),
		lag:            d("stream_group_lag", "Entries of the stream not yet delivered to the group (-1 when Redis cannot tell).", "group"),
		groupPending:   d("stream_group_pending", "Entries delivered to the group and not yet acknowledged.", "group"),
		oldestEntry: d("stream_oldest_pending_entry_age_seconds", "Seconds since the group's oldest unacknowledged entry was added to the stream "+
			"(0 when none), its wait before delivery and its retries included; a stuck delivery is stream_pending_entry_max_idle_seconds.", "group"),
		maxIdle: d("stream_pending_entry_max_idle_seconds", "Seconds since the group's most idle pending entry was last delivered, or its claim "+
			"refreshed by a consumer whose handler runs long (XPENDING idle): how long a delivery has waited for a result (0 when none is pending).", "group"),
		consumers:   d("stream_group_consumers", "Consumers of the group.", "group"),
		partLength:  d("partition_length", "Entries in one partition of the review stream (STREAM_PARTITIONS > 1).", "stream"),
		partLag:     d("partition_group_lag", "Entries of one partition not yet delivered to the group (-1 when Redis cannot tell).", "stream", "group"),
		partPending: d("partition_group_pending", "Entries of one partition delivered to the group and not yet acknowledged.", "stream", "group"),
		partDead:    d("partition_dead_letter_length", "Entries in one partition's dead-letter stream.", "stream"),
		up:          d("pipeline_snapshot_age_seconds", "Time since the pipeline gauges were last read successfully."),
		inReviewUntracked: d("jobs_in_review_untracked", "Jobs in in_review without a stream entry or enqueued_at recorded; "+
			"the reaper re-enqueues them once their updated_at is REENQUEUE_AFTER old."),
		problems:          d("pipeline_problems", "Components of the pipeline that report a problem keeping them from making progress (jobrelay status shows them)."),
		pendingByPriority: d("jobs_pending_by_priority", "Jobs in pending_review by priority (the 20 highest; the rest as \"other\").", "priority"),
		oldestByPriority: d("jobs_oldest_pending_age_by_priority_seconds",
			"Age of the oldest pending_review job of each priority (the 20 highest; the rest as \"other\").", "priority"),
		pendingByTenant: d("jobs_pending_by_tenant",
			"Jobs in pending_review by tenant (\"default\" for none; the 50 with most; the rest as \"other\").", "tenant"),
		oldestByTenant: d("jobs_oldest_pending_age_by_tenant_seconds",
			"Age of the oldest pending_review job of each tenant (\"default\" for none; the 50 with most pending; the rest as \"other\").", "tenant"),
	}
}

// readTimeoutMin is the least time a reading gets, whatever the Interval:
// a short Interval must not cut off a reading that needs a new connection
// on a loaded machine, or no reading would ever succeed.
const readTimeoutMin = 5 * time.Second

// Run refreshes the snapshot every Interval until ctx is done. Errors are
// logged when they start and stop; the gauges keep their last values, and
// jobrelay_pipeline_snapshot_age_seconds grows.
func (c *Collector) Run(ctx context.Context) {
	interval, logger := c.cfg.Interval, c.cfg.Logger
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, readTimeoutMin))
		snap, err := Take(rctx, c.pool, c.rdb, Options{Stream: c.cfg.Stream, Partitions: c.cfg.Partitions})
		cancel()
		switch {
		case err == nil:
			c.mu.Lock()
			c.snap = snap
			c.mu.Unlock()
			if c.cfg.ObserveFunc != nil {
				c.cfg.ObserveFunc(snap)
			}
			if failing {
				logger.InfoContext(ctx, "metrics: reading the pipeline state works again")
				failing = false
			}
		case ctx.Err() == nil && !failing:
			logger.WarnContext(ctx, "metrics: reading the pipeline state failed", slog.String("err", err.Error()))
			failing = true
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.oldestPending, c.inReview, c.oldestInReview, c.streamLength,
		c.entriesAdded, c.deadLetters, c.lag, c.groupPending, c.oldestEntry, c.maxIdle, c.consumers, c.up, c.inReviewUntracked, c.problems,
		c.partLength, c.partLag, c.partPending, c.partDead,
		c.pendingByPriority, c.oldestByPriority, c.pendingByTenant, c.oldestByTenant} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s := c.snap
	c.mu.Unlock()
	if s == nil {
		return
	}
	now := time.Now()
	age := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return max(now.Sub(t).Seconds(), 0)
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(c.up, now.Sub(s.TakenAt).Seconds())
	g(c.pending, float64(s.Backlog.Pending))
	g(c.oldestPending, age(s.Backlog.OldestPendingAt))
	g(c.inReview, float64(s.Backlog.InReview))
	g(c.oldestInReview, age(s.Backlog.OldestInReviewAt))
	g(c.inReviewUntracked, float64(s.Backlog.InReviewUntracked))
	g(c.streamLength, float64(s.Stream.Length))
	g(c.entriesAdded, float64(s.Stream.EntriesAdded))
	g(c.deadLetters, float64(s.DeadLetters))
	g(c.problems, float64(len(s.Health)))
	for _, l := range s.Backlog.ByPriority {
		g(c.pendingByPriority, float64(l.Pending), l.Priority)
		g(c.oldestByPriority, age(l.OldestPendingAt), l.Priority)
	}
	for _, l := range s.Backlog.ByTenant {
		g(c.pendingByTenant, float64(l.Pending), l.Tenant)
		g(c.oldestByTenant, age(l.OldestPendingAt), l.Tenant)
	}
	for _, grp := range s.Groups {
		g(c.lag, float64(grp.Lag), grp.Name)
		g(c.groupPending, float64(grp.Pending), grp.Name)
		g(c.oldestEntry, age(grp.OldestPendingAt), grp.Name)
		idle := 0.0
		if grp.MostIdle != nil {
			idle = age(grp.MostIdle.DeliveredAt)
		}
		g(c.maxIdle, idle, grp.Name)
		g(c.consumers, float64(len(grp.Consumers)), grp.Name)
	}
	for _, p := range s.Partitions {
		g(c.partLength, float64(p.Stream.Length), p.Stream.Name)
		g(c.partDead, float64(p.DeadLetters), p.Stream.Name)
		for _, grp := range p.Groups {
			g(c.partLag, float64(grp.Lag), p.Stream.Name, grp.Name)
			g(c.partPending, float64(grp.Pending), p.Stream.Name, grp.Name)
		}
	}
}
