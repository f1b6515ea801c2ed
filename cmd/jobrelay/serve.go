package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jobrelay/jobrelay/dashboard"
	"github.com/jobrelay/jobrelay/internal/health"
)

// serveConfig is the settings of the metrics and health listener and of
// the dashboard it serves at /ui.
type serveConfig struct {
	MetricsAddr string
	UIWrite     bool   // the dashboard's actions are enabled
	UIAuth      string // "user:password" of the dashboard's basic auth; empty: none

	b *binding // where MetricsAddr came from
}

func (c *serveConfig) bindings() []*binding {
	c.b = &binding{env: "METRICS_ADDR", flag: "metrics-addr", ptr: &c.MetricsAddr, def: metricsAddrDefault, meta: "HOST:PORT",
		help: "the listener of `/metrics`, `/healthz`, `/readyz` and the dashboard at `/ui`; empty disables it. If the default is taken " +
			"(another jobrelay on this host), the next free port up to `:9099`, then any, with a warning",
		check: checkListenAddr, emptyIsValue: true}
	return append([]*binding{c.b}, uiBindings(c)...)
}

// isDefault reports whether MetricsAddr is the default rather than an
// address the user chose (flag, environment or .env).
func (c *serveConfig) isDefault() bool { return c.b != nil && c.b.source == "default" }

// name is how errors call the setting: its variable or its flag.
func (c *serveConfig) name() string {
	if c.b == nil {
		return "METRICS_ADDR"
	}
	return c.b.name()
}

// serveHealth serves the health server on the configured address until ctx
// is done. It returns once listening, or with the error that prevents it;
// the returned function waits for the server to stop.
//
// Several jobrelay processes on one host with default settings must all
// run: when the default address is taken, the listener falls back to
// another port (see health.Listen) and a warning names it. An address the
// user chose is theirs: if it is taken, the command fails with one line and
// exit status 2.
func serveHealth(ctx context.Context, h *health.Server, sc *serveConfig, logger *slog.Logger) (wait func(), err error) {
	addr := sc.MetricsAddr
	if addr == "" {
		return func() {}, nil
	}
	ln, err := health.Listen(ctx, addr, sc.isDefault())
	if err != nil {
		return nil, usagef("%s %s: %s", sc.name(), addr, health.ListenReason(err))
	}
	if sc.isDefault() && !health.SamePort(addr, ln.Addr()) {
		logger.WarnContext(ctx, "jobrelay: the default METRICS_ADDR is taken (another jobrelay on this host?); serving metrics on another port",
			slog.String("default", addr), slog.String("addr", ln.Addr().String()),
			slog.String("hint", "jobrelay healthcheck probes METRICS_ADDR: give it --metrics-addr with this port, or set METRICS_ADDR per process"))
	}
	wait = h.Serve(ctx, ln, logger)
	logger.InfoContext(ctx, "jobrelay: serving /metrics, /healthz, /readyz and the dashboard at /ui", slog.String("addr", ln.Addr().String()),
		slog.Bool("ui_write", sc.UIWrite), slog.Bool("ui_auth", sc.UIAuth != "")) // whether a password is set, never which
	return wait, nil
}

// newDashboard builds the dashboard that the listener serves at /ui.
func newDashboard(cl *clients, sc *serveConfig, common *commonConfig, logger *slog.Logger) (*dashboard.Dashboard, error) {
	user, password, _ := strings.Cut(sc.UIAuth, ":")
	dash, err := dashboard.New(cl.pool, cl.rdb, dashboard.Config{Stream: common.Stream, Partitions: common.Partitions, Prefix: dashboard.PrefixDefault, Write: sc.UIWrite,
		Username: user, Password: password, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return dash, nil
}
