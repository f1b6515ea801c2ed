package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// peersDir is the module of the peers' measurements, relative to the
// repository's root: a module of its own, so that jobrelay's go.mod does
// not carry Watermill and asynq.
const peersDir = "cmd/jobrelay-bench/peers"

// buildPeers builds the peers' binary into dir.
func buildPeers(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	out := filepath.Join(dir, "peers")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, ".")
	build.Dir = peersDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build the peers (%s): %w", peersDir, err)
	}
	return out, nil
}

// peer runs one measurement of the peers' binary on a fresh schema of
// b.o.peerJobs pending jobs and a stream of its own, and returns its jobs/s.
func (b *bench) peer(ctx context.Context, scenario string, workers int) (float64, error) {
	p, err := b.newPipeline(ctx, b.o.peerJobs)
	if err != nil {
		return 0, err
	}
	defer p.drop()
	cmd := exec.CommandContext(ctx, b.peers, "-scenario", scenario, "-database-url", p.url, "-redis-url", b.o.redisURL,
		"-stream", p.stream, "-jobs", strconv.Itoa(b.o.peerJobs), "-workers", strconv.Itoa(workers))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("peers -scenario %s: %w: %s", scenario, err, strings.TrimSpace(stderr.String()))
	}
	return strconv.ParseFloat(strings.TrimSpace(stdout.String()), 64)
}

// peerScenario is a measurement of the peers' binary.
type peerScenario struct {
	scenario string
	workers  int
	name     string // the row's
	versus   string // which jobrelay row it compares with: "relay" or "consumers"
	m        *measurement
}

// addPeers adds the peers' measurements to the rounds (part "peers").
func (b *bench) addPeers(ctx context.Context, add func(part, name string, f func() (float64, int64, error)) *measurement) []*peerScenario {
	ps := []*peerScenario{
		{scenario: "forwarder", workers: 1, versus: "relay",
			name: "Watermill: SQL outbox Forwarder → watermill-redisstream, 1 forwarder (rows stay pending_review)"},
		{scenario: "asynq-enqueue", workers: 1, versus: "relay",
			name: "asynq: Enqueue, one task per job, 1 client (no transaction with the row)"},
		{scenario: "subscriber", workers: 2, versus: "consumers",
			name: "Watermill: watermill-redisstream subscriber ×2, UPDATE + Ack per job"},
		{scenario: "subscriber", workers: 2 * 8, versus: "consumers",
			name: "Watermill: watermill-redisstream subscriber ×16, UPDATE + Ack per job"},
		{scenario: "asynq", workers: 2, versus: "consumers",
			name: fmt.Sprintf("asynq: 2 servers, concurrency %d, UPDATE per job", 8)},
	}
	for _, p := range ps {
		p.m = add("peers", fmt.Sprintf("peer: %s ×%d", p.scenario, p.workers),
			noRSS(func() (float64, error) { return b.peer(ctx, p.scenario, p.workers) }))
	}
	return ps
}

// peerRows writes the peers' rows, each with how many times faster jobrelay's
// row it compares with is: the default relay for publishing, the two
// default consumers for consuming.
func peerRows(ps []*peerScenario, row func(name string, v float64, ratio, target string), relay, consumers float64) {
	for _, p := range ps {
		v := p.m.median()
		if v == 0 {
			continue
		}
		versus, what := relay, "relay"
		if p.versus == "consumers" {
			versus, what = consumers, "consume ×2"
		}
		ratio := "" // jobrelay's row was not run (-only)
		if versus > 0 {
			ratio = fmt.Sprintf("jobrelay %s %.1f×", what, versus/v)
		}
		row(p.name, v, ratio, "")
	}
}
