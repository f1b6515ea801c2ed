package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/relay"
)

// metricsFallbackPorts is how many ports from the default METRICS_ADDR's
// (9090–9099) a process tries before it takes any free port: a predictable
// range for Prometheus file_sd when several processes share a host.
const metricsFallbackPorts = 10

// serveConfig is the metrics and health listener's setting.
type serveConfig struct {
	MetricsAddr string

	st *setting // where MetricsAddr came from
}

func (c *serveConfig) register(s *settings) {
	st := stringSetting(&c.MetricsAddr, "METRICS_ADDR", "metrics-addr", metricsAddrDefault, "HOST:PORT",
		"listener for /metrics, /healthz and /readyz; empty disables it. If the default is taken (another "+
			"jobrelay on this host), the next free port up to :9099, then any free port, with a warning", checkListenAddr)
	st.emptyIsValue = true
	c.st = st
	s.add(st)
}

// isDefault reports whether MetricsAddr is the default rather than an
// address the user chose (flag, environment or .env).
func (c *serveConfig) isDefault() bool { return c.st != nil && c.st.source == "default" }

// name is how errors call the setting: its variable or its flag.
func (c *serveConfig) name() string {
	if c.st == nil {
		return "METRICS_ADDR"
	}
	return c.st.name()
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

// serve listens on the configured address until ctx is done. It returns
// once listening, or with the error that prevents it; the returned function
// waits for the server to stop.
//
// Several jobrelay processes on one host with default settings must all
// run: when the default address is taken, the listener falls back to
// another port (see listenMetrics) and a warning names it. An address the
// user chose is theirs: if it is taken, the command fails with one line and
// exit status 2.
func (o *observability) serve(ctx context.Context, sc *serveConfig, logger *slog.Logger) (wait func(), err error) {
	addr := sc.MetricsAddr
	if addr == "" {
		return func() {}, nil
	}
	ln, err := listenMetrics(addr, sc.isDefault())
	if err != nil {
		return nil, usagef("%s %s: %s", sc.name(), addr, listenReason(err))
	}
	if sc.isDefault() && !sameAddr(addr, ln.Addr()) {
		logger.WarnContext(ctx, "jobrelay: the default METRICS_ADDR is taken (another jobrelay on this host?); serving metrics on another port",
			slog.String("default", addr), slog.String("addr", ln.Addr().String()),
			slog.String("hint", "jobrelay healthcheck probes METRICS_ADDR: give it --metrics-addr with this port, or set METRICS_ADDR per process"))
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

// listenMetrics listens on addr. With fallback (addr is the default), an
// address in use is not an error: it tries the next ports of the same host,
// up to metricsFallbackPorts in all, then any free port of that host.
func listenMetrics(addr string, fallback bool) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil || !fallback || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	host, portText, splitErr := net.SplitHostPort(addr)
	port, atoiErr := strconv.Atoi(portText)
	if splitErr != nil || atoiErr != nil {
		return nil, err
	}
	for p := port + 1; p < port+metricsFallbackPorts && p <= 65535; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}

// listenReason is what went wrong in a listen error, without the
// "listen tcp …:" that the message names already.
func listenReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error() // "address already in use", "permission denied"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}

// sameAddr reports whether the listener got the port addr asked for.
func sameAddr(addr string, got net.Addr) bool {
	_, port, _ := net.SplitHostPort(addr)
	tcp, ok := got.(*net.TCPAddr)
	return ok && port == strconv.Itoa(tcp.Port)
}

// watchPipeline registers the pipeline gauges and refreshes them until ctx
// is done.
func (o *observability) watchPipeline(ctx context.Context, cl *clients, stream string, logger *slog.Logger) (wait func()) {
	col := inspect.NewCollector(cl.pool, cl.rdb, inspect.CollectorConfig{Stream: stream, Logger: logger})
	o.reg.MustRegister(col)
	done := make(chan struct{})
	go func() {
		defer close(done)
		col.Run(ctx)
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
	waitServer, err := o.serve(ctx, sc, logger)
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
