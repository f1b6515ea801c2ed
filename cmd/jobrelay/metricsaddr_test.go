package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/health"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Item 10: with the default METRICS_ADDR taken, the listener falls back to
// the next ports, then to any free port; an address the user chose does not.
func TestMetricsListenerFallsBackOnlyFromTheDefault(t *testing.T) {
	t.Parallel()
	taken := occupy(t, "")

	ln, err := health.Listen(t.Context(), taken, true)
	require.NoError(t, err)
	defer ln.Close()
	require.NotEqual(t, taken, ln.Addr().String())
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	require.Equal(t, "127.0.0.1", host, "the fallback keeps the host")

	_, err = health.Listen(t.Context(), taken, false)
	require.ErrorIs(t, err, syscall.EADDRINUSE)

	// Through serve: the warning names the address actually used.
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	sc := &serveConfig{MetricsAddr: taken, b: &binding{env: "METRICS_ADDR", source: "default"}}
	ctx, cancel := context.WithCancel(ctxT(t))
	wait, err := serveHealth(ctx, health.NewServer(), sc, logger)
	require.NoError(t, err)
	cancel()
	wait()
	var warned map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["level"] == "WARN" {
			warned = m
		}
	}
	require.NotNil(t, warned, buf.String())
	require.Contains(t, warned["msg"], "METRICS_ADDR")
	require.Equal(t, taken, warned["default"])
	require.NotEqual(t, taken, warned["addr"])
	require.NotEmpty(t, warned["addr"])

	// An explicit address in use: exit 2, one clear line.
	sc.b.source = "env"
	_, err = serveHealth(ctxT(t), health.NewServer(), sc, logger)
	var uerr *usageError
	require.ErrorAs(t, err, &uerr)
	require.Equal(t, "METRICS_ADDR "+taken+": address already in use", err.Error())
}

func TestExplicitMetricsAddrInUseExits2(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	taken := occupy(t, "")
	env := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"env", map[string]string{"METRICS_ADDR": taken}, nil, "METRICS_ADDR " + taken + ": address already in use"},
		{"flag", nil, []string{"--metrics-addr", taken}, "--metrics-addr " + taken + ": address already in use"},
	} {
		for _, cmd := range []string{"relay", "consume", "run"} {
			e := map[string]string{}
			maps.Copy(e, env)
			maps.Copy(e, tc.env)
			code, _, stderr := runInProcess(t, e, append([]string{cmd}, tc.args...)...)
			require.Equal(t, 2, code, "%s %s: %s", cmd, tc.name, stderr)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			require.Equal(t, "jobrelay: "+tc.want, lines[len(lines)-1], "%s %s", cmd, tc.name)
		}
	}

	// With LOG_FORMAT=json the line is JSON too.
	code, _, stderr := runInProcess(t, map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(),
		"JOB_REVIEW_QUEUE_NAME": pl.stream, "METRICS_ADDR": taken, "LOG_FORMAT": "json"}, "relay")
	require.Equal(t, 2, code, stderr)
	lines := requireJSONLines(t, stderr)
	last := lines[len(lines)-1]
	require.Equal(t, "ERROR", last["level"])
	require.Equal(t, "jobrelay: METRICS_ADDR "+taken+": address already in use", last["msg"])
}

// TestThreeRelaysOnOneHostWithDefaults starts three relays with no
// METRICS_ADDR while :9090 is taken (by this test, if nobody else holds
// it): each serves its metrics on its own port, says so in a warning, and
// relays; healthcheck reaches each on the address it logged.
func TestThreeRelaysOnOneHostWithDefaults(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	if ln, err := net.Listen("tcp", metricsAddrDefault); err == nil {
		t.Cleanup(func() { _ = ln.Close() })
	} // else someone else holds it: taken either way
	env := withoutVar(pl.env, "METRICS_ADDR")
	dir := t.TempDir()

	var relays []*proc
	for range 3 {
		relays = append(relays, start(t, dir, env, "relay"))
	}
	addrs := map[string]bool{}
	for _, p := range relays {
		addr := metricsAddr(t, p)
		addrs[addr] = true
		warned := p.Logged("METRICS_ADDR")
		require.Len(t, warned, 1, p.Output())
		require.Equal(t, "WARN", warned[0]["level"])
		require.Equal(t, addr, warned[0]["addr"], "the warning names the address in use")
	}
	require.Len(t, addrs, 3, "three listeners")
	for addr := range addrs {
		_, port, _ := net.SplitHostPort(addr)
		require.Eventually(t, func() bool {
			code, _ := runBinaryStderr(t, dir, env, "healthcheck", "--metrics-addr", "127.0.0.1:"+port)
			return code == 0
		}, time.Minute, 50*time.Millisecond, "healthcheck finds %s ready", addr)
	}

	code, out := runBinary(t, dir, env, "seed", "-n", "3000")
	require.Zero(t, code, out)
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusInReview] == 3000 }, time.Minute, 10*time.Millisecond)
	for _, p := range relays {
		require.False(t, p.Exited(), p.Output())
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range relays {
		require.Zero(t, p.Wait(time.Minute))
	}
}

// Item 10: compose services that are scaled have no container name and no
// fixed host port; their metrics ports are published on 127.0.0.1 only.
func TestComposeServicesScale(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, name := range []string{"relay", "consumer"} {
		s, err := p.GetService(name)
		require.NoError(t, err)
		require.Empty(t, s.ContainerName, "%s: a container name allows one replica", name)
		for _, port := range s.Ports {
			require.Empty(t, port.Published, "%s: a fixed host port (%s) allows one replica per port", name, port.Published)
			require.Equal(t, "127.0.0.1", port.HostIP, "%s: metrics are published on the loopback only", name)
		}
	}
}
