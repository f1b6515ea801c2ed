package consumer

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobrelay/jobrelay/internal/stream"
)

// Defaults of Config.
const (
	StreamDefault               = "job_review"
	GroupDefault                = "job_review_workers"
	ConcurrencyDefault          = 8
	PartitionsDefault           = 1
	BlockDefault                = 2 * time.Second
	ReclaimIdleDefault          = time.Minute
	MaxDeliveriesDefault        = 5
	HandlerTimeoutDefault       = 5 * time.Minute
	ShutdownTimeoutDefault      = 30 * time.Second
	DeleteConsumersAfterDefault = time.Hour
	TrimIntervalDefault         = time.Second

	// HandlerSpecDefault is the handler spec that means LogHandler, as
	// ParseHandler reads it; "" means the same.
	HandlerSpecDefault = "log"
)

// Config configures a Consumer. The zero value of each field means its
// default; -1 disables the features that say so.
type Config struct {
	// Handler reviews each job. Required.
	Handler Handler

	// Stream is the Redis stream to read. Defaults to "job_review".
	Stream string

	// Partitions is the number of streams the relay spreads jobs over (see
	// relay.Config.Partitions): the consumer reads, reclaims, trims and
	// dead-letters each of them ("{<stream>:<k>}:dead"), with its
	// Concurrency handlers shared between them. It also reads the streams
	// of the pipeline that in_review jobs still name but that are no longer
	// partitions (STREAM_PARTITIONS changed), until they are drained.
	// Defaults to 1.
	Partitions int

	// Group is the consumer group, shared by every consumer of the
	// pipeline. It is created, from the start of the stream, if missing.
	// Defaults to "job_review_workers".
	Group string

	// Name is this consumer's name in the group, unique per process.
	// Defaults to "<host>-<pid>-<random>".
	Name string

	// Concurrency is the number of handlers that run at once. Defaults to 8.
	Concurrency int

	// ReadCount is the most idle handlers one XREADGROUP fetches entries
	// for. While handlers are fast, a read also fetches the entries the
	// busy handlers will start within milliseconds, at most 100 (see the
	// package doc, Prefetch); work the consumer cannot start soon stays
	// available to other consumers. Defaults to Concurrency.
	ReadCount int

	// Block is how long an XREADGROUP waits for new entries. Entries are
	// delivered as soon as they arrive; this only bounds each wait.
	// Defaults to 2 seconds.
	Block time.Duration

	// ReclaimIdle is how long an entry may stay delivered without a result
	// before any consumer takes it over: the work of a dead consumer is
	// finished by the others after it, and a failed job is retried after
	// it at the earliest, then with a backoff that doubles per failure (see
	// the package doc). A consumer refreshes its claim on entries whose
	// handler runs long, so a slow job is not taken over while it runs.
	// Defaults to 1 minute.
	ReclaimIdle time.Duration

	// MaxDeliveries is how many deliveries that count a job gets before it
	// is dead-lettered: copied to "{<stream>}:dead" with its error and
	// delivery count, acknowledged, and marked failed. Transient failures
	// (the review service down or slow) count slowly or not at all; see
	// the package doc. Defaults to 5.
	MaxDeliveries int

	// HandlerTimeout bounds one handler call; its context is cancelled
	// after it. Defaults to 5 minutes.
	HandlerTimeout time.Duration

	// ShutdownTimeout is how long in-flight handlers may finish after Run's
	// context is done. Jobs not finished by then stay pending in the group,
	// for another consumer to reclaim. -1 cancels handlers in flight at
	// once. Defaults to 30 seconds.
	ShutdownTimeout time.Duration

	// DeleteConsumersAfter is how long a consumer of the group must be
	// inactive, with nothing pending, before it is removed from the group,
	// so that XINFO CONSUMERS lists live consumers. -1 disables it.
	// Defaults to 1 hour.
	DeleteConsumersAfter time.Duration

	// TrimInterval is the least time between two trims of the stream, after
	// acknowledgements. Trimming never removes an entry a group still
	// needs. -1 disables it. Defaults to 1 second.
	TrimInterval time.Duration

	// Logger receives the consumer's logs. Defaults to discarding them.
	Logger *slog.Logger

	// Registerer is where New registers the consumer's metrics, named
	// jobrelay_consumer_* and jobrelay_stream_trimmed_entries_total. A
	// relay and a consumer can share one. Two consumers cannot as is: wrap
	// it for each with prometheus.WrapRegistererWith and a label of its
	// own. Defaults to nil: the metrics are not registered.
	Registerer prometheus.Registerer
}

func (c *Config) withDefaults() *Config {
	out := *c
	out.Stream = cmp.Or(out.Stream, StreamDefault)
	out.Group = cmp.Or(out.Group, GroupDefault)
	if out.Name == "" {
		out.Name = defaultName()
	}
	out.Concurrency = cmp.Or(out.Concurrency, ConcurrencyDefault)
	out.Partitions = cmp.Or(out.Partitions, PartitionsDefault)
	out.ReadCount = cmp.Or(out.ReadCount, out.Concurrency)
	out.Block = cmp.Or(out.Block, BlockDefault)
	out.ReclaimIdle = cmp.Or(out.ReclaimIdle, ReclaimIdleDefault)
	out.MaxDeliveries = cmp.Or(out.MaxDeliveries, MaxDeliveriesDefault)
	out.HandlerTimeout = cmp.Or(out.HandlerTimeout, HandlerTimeoutDefault)
	out.ShutdownTimeout = cmp.Or(out.ShutdownTimeout, ShutdownTimeoutDefault)
	if out.ShutdownTimeout == -1 {
		out.ShutdownTimeout = 0 // no grace: the stop's timer fires at once
	}
	out.DeleteConsumersAfter = cmp.Or(out.DeleteConsumersAfter, DeleteConsumersAfterDefault)
	out.TrimInterval = cmp.Or(out.TrimInterval, TrimIntervalDefault)
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

// Bounds of Config's fields.
const (
	ConcurrencyMax    = 10_000
	PartitionsMax     = 1024
	MaxDeliveriesMax  = 1000
	BlockMin          = time.Millisecond
	ReclaimIdleMin    = 10 * time.Millisecond
	HandlerTimeoutMin = time.Millisecond
)

// validate reports the first field that is out of range.
func (c *Config) validate() error {
	switch {
	case c.Handler == nil:
		return configErrorf("Handler", "is required")
	case stream.CheckName(c.Stream) != nil:
		return configErrorf("Stream", "is not usable: %v", stream.CheckName(c.Stream))
	case c.Partitions < 1 || c.Partitions > PartitionsMax:
		return configErrorf("Partitions", "must be between 1 and %d", PartitionsMax)
	case c.Concurrency < 1 || c.Concurrency > ConcurrencyMax:
		return configErrorf("Concurrency", "must be between 1 and %d", ConcurrencyMax)
	case c.ReadCount < 1:
		return configErrorf("ReadCount", "must be at least 1")
	case c.Block < BlockMin:
		return configErrorf("Block", "must be at least %s", BlockMin)
	case c.ReclaimIdle < ReclaimIdleMin:
		return configErrorf("ReclaimIdle", "must be at least %s", ReclaimIdleMin)
	case c.MaxDeliveries < 1 || c.MaxDeliveries > MaxDeliveriesMax:
		return configErrorf("MaxDeliveries", "must be between 1 and %d", MaxDeliveriesMax)
	case c.HandlerTimeout < HandlerTimeoutMin:
		return configErrorf("HandlerTimeout", "must be at least %s", HandlerTimeoutMin)
	case c.ShutdownTimeout < 0:
		return configErrorf("ShutdownTimeout", "must be positive, or -1 to cancel handlers in flight at once")
	case c.DeleteConsumersAfter < 0 && c.DeleteConsumersAfter != -1:
		return configErrorf("DeleteConsumersAfter", "must be positive, or -1 to disable it")
	case c.DeleteConsumersAfter > 0 && c.DeleteConsumersAfter < 2*c.ReclaimIdle:
		return configErrorf("DeleteConsumersAfter", "must be at least twice ReclaimIdle (%s)", c.ReclaimIdle)
	case c.TrimInterval < 0 && c.TrimInterval != -1:
		return configErrorf("TrimInterval", "must be positive, or -1 to disable trimming")
	}
	return nil
}

// ConfigError is a Config field that is out of range, or missing. Its
// message names the field: "Concurrency must be between 1 and 10000".
type ConfigError struct {
	// Field is the name of the Config field, as in "Concurrency".
	Field string
	// Reason is what is wrong with it, as in "must be at least 1".
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string { return e.Field + " " + e.Reason }

func configErrorf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// defaultName is unique per process: host, pid, and random bytes in case a
// container restarts with the same host name and pid.
func defaultName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "consumer"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
