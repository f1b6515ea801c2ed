package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobrelay/jobrelay/internal/inspect"
	"github.com/jobrelay/jobrelay/relay"
)

// serveConfig is the metrics and health listener's setting.
type serveConfig struct {
	MetricsAddr string
}

func (c *serveConfig) register(s *settings) {
	st := stringSetting(&c.MetricsAddr, "METRICS_ADDR", "metrics-addr", metricsAddrDefault, "HOST:PORT",
		"listener for /metrics, /healthz and /readyz; empty disables it", checkListenAddr)
	st.emptyIsValue = true
	s.add(st)
}

// observability is a process's metrics registry and its listener.
type observability struct {
	reg    *prometheus.Registry
	checks []readyCheck
}

// readyCheck is one condition of /readyz.
type readyCheck struct {
	name  string
	check func(ctx context.Context) error
}

func newObservability() *observability {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &observability{reg: reg}
}

func (o *observability) ready(name string, check func(ctx context.Context) error) {
	o.checks = append(o.checks, readyCheck{name, check})
}

// handler serves /metrics, /healthz (the process is alive) and /readyz
// (every check passes within a second).
func (o *observability) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{Registry: o.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		var failed []string
		for _, c := range o.checks {
			if err := c.check(ctx); err != nil {
				failed = append(failed, c.name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, f := range failed {
				_, _ = fmt.Fprintln(w, f)
			}
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}

// serve listens on addr until ctx is done. It returns once listening, or
// with the error that prevents it; the returned function waits for the
// server to stop.
func (o *observability) serve(ctx context.Context, addr string, logger *slog.Logger) (wait func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener (METRICS_ADDR): %w", err)
	}
	srv := &http.Server{Handler: o.handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("jobrelay: metrics listener failed", slog.String("err", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.InfoContext(ctx, "jobrelay: serving /metrics, /healthz and /readyz", slog.String("addr", ln.Addr().String()))
	return func() { <-done }, nil
}

// watchPipeline registers the pipeline gauges and refreshes them until ctx
// is done.
func (o *observability) watchPipeline(ctx context.Context, cl *clients, stream string, logger *slog.Logger) (wait func()) {
	col := inspect.NewCollector()
	o.reg.MustRegister(col)
	done := make(chan struct{})
	go func() {
		defer close(done)
		col.Run(ctx, cl.pool, cl.rdb, inspect.Options{Stream: stream}, inspect.RefreshDefault, logger)
	}()
	return func() { <-done }
}

// start serves the metrics and health endpoints of a long-running command
// and refreshes the pipeline gauges, until ctx is done. /readyz checks both
// servers and, given a relay, its LISTEN connection. The returned function
// waits for both to stop.
func (o *observability) start(ctx context.Context, cl *clients, sc *serveConfig, stream string, logger *slog.Logger, r *relay.Relay) (wait func(), err error) {
	o.serverChecks(cl)
	if r != nil {
		o.ready("listen", func(context.Context) error { return r.Ready() })
	}
	waitServer, err := o.serve(ctx, sc.MetricsAddr, logger)
	if err != nil {
		return nil, err
	}
	waitGauges := o.watchPipeline(ctx, cl, stream, logger)
	return func() {
		waitServer()
		waitGauges()
	}, nil
}

// serverChecks are the readiness checks of both servers.
func (o *observability) serverChecks(cl *clients) {
	o.ready("postgres", cl.pool.Ping)
	o.ready("redis", func(ctx context.Context) error { return cl.rdb.Ping(ctx).Err() })
}
