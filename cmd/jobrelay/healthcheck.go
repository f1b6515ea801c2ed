package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

const healthcheckHelp = `Asks the jobrelay process of this container whether it is ready (GET
/readyz on METRICS_ADDR) and exits 0 if so, 1 if not: a container health
check for images without curl. --live asks /healthz instead (alive, not
necessarily ready).

It probes METRICS_ADDR, the same setting the process reads: in a container
each process has its own :9090. Several processes on one host with the
default take the next free ports (9091-9099, then any) and log a warning
with the address each uses; probe one with --metrics-addr 127.0.0.1:PORT,
or give each process its own METRICS_ADDR.`

type healthcheckCommand struct {
	sc   serveConfig
	live bool
}

func (c *healthcheckCommand) parseFlags(a *app, args []string) error {
	s := newSettings("healthcheck", a.env)
	s.bind(c.sc.bindings()...)
	s.bind(&binding{flag: "live", ptr: &c.live, def: false, help: "check /healthz (alive) instead of /readyz (ready)"})
	if err := a.parseNoArgs(s, args, "jobrelay healthcheck [--live] [flags]", healthcheckHelp); err != nil {
		return err
	}
	if c.sc.MetricsAddr == "" {
		return usagef("healthcheck: METRICS_ADDR is empty: the process serves no health endpoints")
	}
	return nil
}

func (c *healthcheckCommand) run(ctx context.Context, a *app) error {
	sc, live := c.sc, c.live
	host, port, _ := net.SplitHostPort(sc.MetricsAddr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	path := "/readyz"
	if live {
		path = "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(a.stdout, string(body))
	return nil
}
