// Package metrics defines jobrelay's Prometheus metrics. Each process
// registers them on a registry of its own (no global state); a component
// given no registry counts into collectors nobody scrapes.
package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "jobrelay"

// Relay holds the relay's metrics.
type Relay struct {
	JobsRelayed        prometheus.Counter
	JobsUnpublishable  prometheus.Counter
	JobsReaped         prometheus.Counter
	JobsArchived       prometheus.Counter
	Cycles             *prometheus.CounterVec // result: published, empty, error
	CycleDuration      prometheus.Histogram
	BatchSize          prometheus.Histogram
	Errors             *prometheus.CounterVec // kind: claim, publish, commit, reap, listen, pressure, trim
	BackpressurePauses prometheus.Counter
	Paused             prometheus.Gauge
	Listening          prometheus.Gauge
	JobsSkipped        prometheus.Gauge
	Stalled            prometheus.Gauge
	Trimmed            prometheus.Counter
}

// NewRelay creates the relay's metrics and registers them on reg, if not
// nil. It fails if reg refuses one, having registered none of them then.
// It is long because it is a table of definitions.
func NewRelay(reg prometheus.Registerer) (*Relay, error) {
	m := &Relay{
		JobsRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "jobs_relayed_total",
			Help: "Jobs published to the stream and committed in_review.",
		}),
		JobsUnpublishable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "jobs_unpublishable_total",
			Help: "Claimed jobs marked failed instead of relayed: their stream entry would be too large, or the database refused to mark them in_review (a trigger, a constraint, a value out of range); last_error says which.",
		}),
		JobsReaped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "jobs_reaped_total",
			Help: "in_review jobs whose stream entry was lost, sent back to pending_review.",
		}),
		JobsArchived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "jobs_archived_total",
			Help: "Reviewed jobs older than ARCHIVE_AFTER moved to archived by the archiver.",
		}),
		Cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "cycles_total",
			Help: "Relay cycles (claim, publish, commit) by result: published, empty or error.",
		}, []string{"result"}),
		CycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "relay", Name: "cycle_duration_seconds",
			Help:    "Duration of relay cycles that claimed jobs, from BEGIN to COMMIT.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "relay", Name: "batch_size",
			Help:    "Jobs claimed per relay cycle that claimed any.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "errors_total",
			Help: "Relay errors by kind: claim, publish, commit, reap, listen, pressure, trim, archive.",
		}, []string{"kind"}),
		BackpressurePauses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "backpressure_pauses_total",
			Help: "Times the relay stopped claiming because consumers were behind or Redis was nearly full.",
		}),
		Paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "relay", Name: "paused",
			Help: "1 while the relay holds back because of backpressure.",
		}),
		Listening: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "relay", Name: "listening",
			Help: "1 while the relay's LISTEN connection is up.",
		}),
		JobsSkipped: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "relay", Name: "jobs_skipped",
			Help: "pending_review jobs this relay process leaves alone because the database refuses every update of them, even marking them failed; each is named in an Error log line.",
		}),
		Stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "relay", Name: "stalled",
			Help: "1 while the relay is paused by backpressure and nothing progresses (no group reads, no memory freed, nothing trimmed); /readyz and jobrelay status --check say why.",
		}),
		Trimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "trimmed_entries_total",
			Help: "Entries the relay trimmed from the stream after every group was done with them.",
		}),
	}
	for _, r := range []string{"published", "empty", "error"} {
		m.Cycles.WithLabelValues(r)
	}
	for _, k := range []string{"claim", "publish", "commit", "reap", "listen", "pressure", "trim", "archive"} {
		m.Errors.WithLabelValues(k)
	}
	if err := register(reg, m.JobsRelayed, m.JobsUnpublishable, m.JobsReaped, m.JobsArchived, m.Cycles, m.CycleDuration,
		m.BatchSize, m.Errors, m.BackpressurePauses, m.Paused, m.Listening, m.JobsSkipped, m.Stalled, m.Trimmed); err != nil {
		return nil, fmt.Errorf("register relay metrics: %w", err)
	}
	return m, nil
}

// Consumer holds a consumer's metrics.
type Consumer struct {
	Jobs            *prometheus.CounterVec // result: reviewed, retried, dead_lettered, skipped
	HandlerDuration prometheus.Histogram
	Reclaimed       prometheus.Counter
	Errors          *prometheus.CounterVec // kind: read, finish, reclaim, refresh, dead_letter, trim, group
	Trimmed         prometheus.Counter
	InFlight        prometheus.Gauge
	// TransientFailures counts handler failures that looked like an outage
	// of the review service (connection refused, timeouts, 502/503/504,
	// 429): they count toward MaxDeliveries slowly or not at all.
	TransientFailures prometheus.Counter
	// CircuitOpen is 1 while the consumer holds back because the review
	// service looks down: it fetches one job at a time, as a probe.
	CircuitOpen     prometheus.Gauge
	RecorderStalled prometheus.Gauge // 1 while results cannot be recorded (see Consumer.Ready)
	// ReviewedByPriority and ReviewedByTenant count the jobs marked
	// reviewed by priority and by tenant, with bounded labels (see
	// BoundedLabels).
	ReviewedByPriority *prometheus.CounterVec
	ReviewedByTenant   *prometheus.CounterVec
}

// NewConsumer creates a consumer's metrics and registers them on reg, if
// not nil. It fails if reg refuses one, having registered none of them then.
func NewConsumer(reg prometheus.Registerer) (*Consumer, error) {
	m := &Consumer{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "consumer", Name: "jobs_total",
			Help: "Jobs handled, by result: reviewed, retried (handler failed, will be redelivered), dead_lettered, skipped (already finished).",
		}, []string{"result"}),
		HandlerDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "consumer", Name: "handler_duration_seconds",
			Help:    "Duration of review handler calls.",
			Buckets: []float64{.0001, .001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 120, 300},
		}),
		Reclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "consumer", Name: "reclaimed_total",
			Help: "Entries taken over from consumers that left them idle (XAUTOCLAIM).",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "consumer", Name: "errors_total",
			Help: "Consumer errors by kind: read, finish, reclaim, refresh, dead_letter, trim, group.",
		}, []string{"kind"}),
		Trimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "stream", Name: "trimmed_entries_total",
			Help: "Entries trimmed from the stream after every group was done with them.",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "consumer", Name: "in_flight",
			Help: "Entries this consumer holds: handlers running or results not yet recorded.",
		}),
	}
	for _, r := range []string{"reviewed", "retried", "dead_lettered", "skipped"} {
		m.Jobs.WithLabelValues(r)
	}
	for _, k := range []string{"read", "finish", "reclaim", "refresh", "dead_letter", "trim", "group"} {
		m.Errors.WithLabelValues(k)
	}
	m.TransientFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "consumer", Name: "transient_failures_total",
		Help: "Handler failures that looked like an outage of the review service (connection refused, timeout, 502/503/504, 429).",
	})
	m.CircuitOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "consumer", Name: "circuit_open",
		Help: "1 while the consumer holds back because the review service looks down, probing it with one job at a time.",
	})
	m.Errors.WithLabelValues("retry")
	m.RecorderStalled = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "consumer", Name: "recorder_stalled",
		Help: "1 while the consumer cannot record results: a batch has waited more than 30s to be recorded (PostgreSQL or Redis failing or not answering). /readyz and jobrelay status --check say why.",
	})
	m.ReviewedByPriority = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "consumer", Name: "reviewed_by_priority_total",
		Help: "Jobs marked reviewed, by priority (the first 20 priorities seen; the others as \"other\").",
	}, []string{"priority"})
	m.ReviewedByTenant = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "consumer", Name: "reviewed_by_tenant_total",
		Help: "Jobs marked reviewed, by tenant (\"default\" for none; the first 50 tenants seen; the others as \"other\").",
	}, []string{"tenant"})
	if err := register(reg, m.Jobs, m.HandlerDuration, m.Reclaimed, m.Errors, m.Trimmed, m.InFlight,
		m.TransientFailures, m.CircuitOpen, m.RecorderStalled, m.ReviewedByPriority, m.ReviewedByTenant); err != nil {
		return nil, fmt.Errorf("register consumer metrics: %w", err)
	}
	return m, nil
}

// register registers cs on reg, if not nil: all of them, or, when reg
// refuses one (a name already registered: two relays on one registry),
// none, so that the caller may try again with another registry.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}
