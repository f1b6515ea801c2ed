package main

import (
	"context"
	"log/slog"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/dashboard"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/health"
	"github.com/jobrelay/jobrelay/relay"
)

// pipelineCmd is what the commands that start pipelines (run, relay, consume)
// read and run: a relay, a consumer, or both, with the metrics and health
// listener. They share one wiring path, start.
type pipelineCmd struct {
	name     string // the command
	synopsis string
	help     string
	onceFlag bool // the command has --once (relay)
	common   commonConfig
	serve    serveConfig
	relay    *relay.Config    // nil: no relay
	consumer *consumer.Config // nil: no consumer
	handler  string           // HANDLER's spec, for the consumer
	migrate  bool             // apply the migrations first (run)
	once     bool             // relay until nothing is pending, then return (relay --once)

	s *settings
}

// parseFlags implements command.
func (p *pipelineCmd) parseFlags(a *app, args []string) error {
	p.s = newSettings(p.name, a.env)
	p.bind(p.s)
	if p.onceFlag {
		p.s.bind(&binding{flag: "once", ptr: &p.once, def: false, help: "relay until nothing is pending, then exit 0"})
	}
	return a.parseNoArgs(p.s, args, p.synopsis, p.help)
}

// run implements command.
func (p *pipelineCmd) run(ctx context.Context, a *app) error {
	return p.start(ctx, p.s, a.logger(p.common.LogFormat, p.common.LogLevel), a.abort)
}

// bind registers the pipeline's settings.
func (p *pipelineCmd) bind(s *settings) {
	s.bind(p.common.bindings()...)
	if p.relay != nil {
		s.bind(relayBindings(p.relay)...)
	}
	if p.consumer != nil {
		s.bind(consumerBindings(p.consumer, &p.handler, p.relay == nil)...)
	}
	s.bind(p.serve.bindings()...)
}

// configure completes and validates the components' Configs, reporting a
// bad field under its variable.
func (p *pipelineCmd) configure(s *settings, logger *slog.Logger) error {
	if p.relay != nil {
		p.relay.Stream, p.relay.Partitions, p.relay.Logger = p.common.Stream, p.common.Partitions, logger
		if err := p.relay.Validate(); err != nil {
			return s.configError(err)
		}
	}
	if p.consumer != nil {
		if p.relay != nil {
			p.consumer.Group = p.relay.Group // JOB_REVIEW_GROUP is bound once
		}
		handler, err := consumer.ParseHandler(p.handler, logger)
		if err != nil {
			return usagef("HANDLER: %v", err)
		}
		p.consumer.Stream, p.consumer.Partitions = p.common.Stream, p.common.Partitions
		p.consumer.Handler, p.consumer.Logger = handler, logger
		if err := p.consumer.Validate(); err != nil {
			return s.configError(err)
		}
	}
	return nil
}

// maxConns is the PostgreSQL pool's size: the relay's cycles and LISTEN
// connection, and the consumer's recorders.
func (p *pipelineCmd) maxConns() int32 {
	switch {
	case p.consumer == nil:
		return 4
	case p.relay == nil:
		return int32(min(p.consumer.Concurrency, 8) + 2)
	default:
		return int32(min(p.consumer.Concurrency, 8) + 4)
	}
}

// start runs the pipeline until ctx is done: it opens the clients, builds
// the components and their metrics, applies the migrations if asked,
// serves the metrics and health endpoints, and runs the components under
// an errgroup. abort is closed at a second signal.
func (p *pipelineCmd) start(ctx context.Context, s *settings, logger *slog.Logger, abort <-chan struct{}) error {
	if err := p.configure(s, logger); err != nil {
		return err
	}
	cl, err := openClients(ctx, &p.common, p.maxConns(), logger)
	if err != nil {
		return err
	}
	defer cl.Close()

	h := health.NewServer()
	var (
		r     *relay.Relay
		c     *consumer.Consumer
		attrs []slog.Attr
	)
	if p.relay != nil {
		p.relay.Registerer = h.Registry
		if r, err = relay.New(cl.pool, cl.rdb, *p.relay); err != nil {
			return s.configError(err)
		}
		h.Ready("relay", func(context.Context) error { return r.Ready() })
		attrs = append(attrs, relayAttrs(p.relay, p.once)...)
	}
	if p.consumer != nil {
		p.consumer.Registerer = h.Registry
		if c, err = consumer.New(cl.pool, cl.rdb, *p.consumer); err != nil {
			return s.configError(err)
		}
		h.Ready("recorder", func(context.Context) error { return c.Ready() })
		attrs = append(attrs, consumerAttrs(p.consumer, p.handler, c.Name())...)
	}
	logStart(ctx, logger, p.name, &p.common, append(attrs, slog.String("redis", redisKind(cl.rdb)))...)

	if p.migrate {
		if !waitForPostgres(ctx, logger, cl.pool) {
			return nil
		}
		if err := migrateUp(ctx, cl, logger); err != nil {
			return err
		}
	}
	if p.once {
		return drainOnce(ctx, logger, r)
	}

	serverChecks(h, cl)
	var observe func(*inspect.Snapshot)
	if p.serve.MetricsAddr != "" {
		dash, err := newDashboard(cl, &p.serve, &p.common, logger)
		if err != nil {
			return err
		}
		h.Handle(dashboard.PrefixDefault+"/", dash)
		h.Handle(dashboard.PrefixDefault, dash)
		observe = dash.Observe // the chart draws on the gauges' snapshots
	}
	// The listener and the gauges stop when the components have: on a
	// signal, or when one fails.
	g, gctx := errgroup.WithContext(ctx)
	serveCtx, stopServing := context.WithCancel(ctx)
	waitServer, err := serveHealth(serveCtx, h, &p.serve, logger)
	if err != nil {
		stopServing()
		return err
	}
	defer waitServer()
	waitGauges := watchPipeline(serveCtx, h, cl, &p.common, observe, logger)
	defer waitGauges()
	defer stopServing() // this defer runs first: the waits above then return

	if r != nil {
		g.Go(func() error { return r.Run(gctx) })
	}
	if c != nil {
		stopAbort := abortOn(abort, c.Abort)
		defer stopAbort()
		g.Go(func() error { return c.Run(gctx) })
	}
	return g.Wait()
}

// serverChecks are the readiness checks of both servers.
func serverChecks(h *health.Server, cl *clients) {
	h.Ready("postgres", cl.pool.Ping)
	h.Ready("redis", func(ctx context.Context) error { return cl.rdb.Ping(ctx).Err() })
}

// watchPipeline registers the pipeline gauges and refreshes them until ctx
// is done.
// observe, if not nil, is given each snapshot.
func watchPipeline(ctx context.Context, h *health.Server, cl *clients, common *commonConfig, observe func(*inspect.Snapshot), logger *slog.Logger) (wait func()) {
	col := inspect.NewCollector(cl.pool, cl.rdb, inspect.CollectorConfig{Stream: common.Stream, Partitions: common.Partitions,
		Interval: inspect.RefreshDefault, Logger: logger, ObserveFunc: observe})
	h.Registry.MustRegister(col)
	done := make(chan struct{})
	go func() {
		defer close(done)
		col.Run(ctx)
	}()
	return func() { <-done }
}

// drainOnce relays until nothing is pending (relay --once).
func drainOnce(ctx context.Context, logger *slog.Logger, r *relay.Relay) error {
	res, err := r.DrainReport(ctx)
	if err != nil {
		return err
	}
	// Rows the database refused are no reason to fail: they are isolated,
	// and named here.
	unrelayed := append(append([]string{}, res.Failed...), res.LeftAlone...)
	if len(unrelayed) > 0 {
		logger.WarnContext(ctx, "relay: "+strconv.Itoa(len(unrelayed))+" jobs could not be relayed (see their last_error)",
			slog.Int("num_unrelayed", len(unrelayed)), slog.Any("job_ids", unrelayed),
			slog.Int("num_failed", len(res.Failed)), slog.Any("left_pending", res.LeftAlone))
	}
	logger.InfoContext(ctx, "relay: nothing left pending; exiting", slog.Int("num_relayed", res.Jobs-len(unrelayed)))
	return nil
}

// abortOn calls abort when the second signal comes, until stop is called.
func abortOn(signal <-chan struct{}, abort func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-signal:
			abort()
		case <-done:
		}
	}()
	return func() { close(done) }
}

// migrateUp applies the pending migrations and says what it did.
func migrateUp(ctx context.Context, cl *clients, logger *slog.Logger) error {
	res, err := db.MigrateUp(ctx, cl.pool, logger)
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "jobrelay: "+res.String(), slog.Int("num_applied", res.Applied), slog.Int64("version", res.Version))
	return nil
}

// relayAttrs are the relay's settings in the start-up line.
func relayAttrs(c *relay.Config, once bool) []slog.Attr {
	fair := c.TenantFair || len(c.TenantWeights) > 0 || c.TenantMaxInFlight > 0
	attrs := []slog.Attr{
		slog.String("group", c.Group),
		slog.Int("batch_size", c.BatchSize),
		slog.Int("workers", c.Workers),
		slog.Duration("poll_interval", c.PollInterval),
		slog.Bool("poll_only", c.PollOnly),
		slog.Duration("cycle_timeout", c.CycleTimeout),
		slog.Duration("reenqueue_after", c.ReenqueueAfter),
		slog.Int64("max_stream_lag", maxStreamLag(c)),
		slog.Duration("archive_after", max(c.ArchiveAfter, 0)),
		slog.Bool("priority_strict", c.PriorityStrict),
		slog.Bool("tenant_fair", fair),
		slog.Int("tenant_max_in_flight", max(c.TenantMaxInFlight, 0)),
		slog.Int("tenant_weights", len(c.TenantWeights)),
		slog.Bool("once", once),
	}
	if c.ListenDatabaseURL != "" {
		attrs = append(attrs, slog.String("listen_database_url", db.RedactURL(c.ListenDatabaseURL)))
	}
	return attrs
}

// maxStreamLag is MaxStreamLag in effect: unset, its default depends on
// fair claims.
func maxStreamLag(c *relay.Config) int64 {
	switch {
	case c.MaxStreamLag != 0:
		return c.MaxStreamLag
	case c.TenantFair || len(c.TenantWeights) > 0 || c.TenantMaxInFlight > 0:
		return relay.MaxStreamLagFairDefault
	default:
		return relay.MaxStreamLagDefault
	}
}

// consumerAttrs are the consumer's settings in the start-up line.
func consumerAttrs(c *consumer.Config, spec, name string) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("consumer", name),
		slog.String("handler", consumer.RedactSpec(spec)), // tokens in the command or URL stay hidden
		slog.Int("concurrency", c.Concurrency),
		slog.Duration("reclaim_idle", c.ReclaimIdle),
		slog.Int("max_deliveries", c.MaxDeliveries),
		slog.Duration("handler_timeout", c.HandlerTimeout),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
	}
	return append(attrs, slog.String("group", c.Group))
}

// uniqueAttrs drops the attributes whose key came before: a JSON object
// with a key twice is not valid for many readers.
func uniqueAttrs(attrs []slog.Attr) []slog.Attr {
	seen := map[string]bool{}
	out := attrs[:0:0]
	for _, a := range attrs {
		if !seen[a.Key] {
			seen[a.Key] = true
			out = append(out, a)
		}
	}
	return out
}
