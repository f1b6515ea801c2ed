// Command jobrelay-bench measures jobrelay against the limits of the
// PostgreSQL and Redis it runs on, in one run, and prints a Markdown table:
// `make bench`. It needs the local servers (TEST_DATABASE_URL and
// TEST_REDIS_URL, as the tests) and writes only to schemas and streams of
// its own, which it drops.
//
// Throughputs are medians of -runs runs. Each run starts from a fresh
// schema with the jobs already inserted; what is timed is the draining.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobrelay-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	runs        int
	jobs        int
	backlog     int
	pollerJobs  int
	peerJobs    int
	steadyRate  int
	steadyFor   time.Duration
	latencyFor  time.Duration
	latencyPoll string
	rate        int
	out         string
	only        map[string]bool
	dbURL       string
	redisURL    string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("jobrelay-bench", flag.ContinueOnError)
	fs.IntVar(&o.runs, "runs", 3, "runs of each throughput scenario (the median is reported)")
	fs.IntVar(&o.jobs, "jobs", 200_000, "jobs per throughput run")
	fs.IntVar(&o.backlog, "backlog", 1_000_000, "backlog drained by the relay whose memory is measured")
	fs.IntVar(&o.pollerJobs, "poller-jobs", 20_000, "jobs per run of the old poller's pattern (it is slow)")
	fs.IntVar(&o.peerJobs, "peer-jobs", 20_000, "jobs per run of the peers (Watermill, asynq: they are slower)")
	fs.IntVar(&o.steadyRate, "steady-rate", 1000, "inserts per second in the steady-rate cost runs")
	fs.DurationVar(&o.steadyFor, "steady-duration", 30*time.Second, "length of each steady-rate cost run")
	fs.DurationVar(&o.latencyFor, "latency-duration", 5*time.Second, "length of each latency run")
	fs.IntVar(&o.rate, "rate", 500, "inserts per second in the latency runs")
	fs.StringVar(&o.latencyPoll, "latency-poll-interval", "", "POLL_INTERVAL of the relay in the latency runs (default: jobrelay's, 5m)")
	fs.StringVar(&o.out, "out", "", "also write the report to this file (BENCHMARKS.md)")
	only := fs.String("only", "", "comma-separated parts to run, for quicker looks: limits, relay, poller, consumers, peers, steady, hot, latency, memory, idle (default all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *only != "" {
		o.only = map[string]bool{}
		for part := range strings.SplitSeq(*only, ",") {
			o.only[strings.TrimSpace(part)] = true
		}
	}
	o.dbURL, o.redisURL = testenv.DatabaseURL(), testenv.RedisURL()

	dir, err := os.MkdirTemp("", "jobrelay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binary := filepath.Join(dir, "jobrelay")
	if err := testenv.Build(ctx, binary, "./cmd/jobrelay", "", stderr); err != nil {
		return fmt.Errorf("%w (run from the repository's root)", err)
	}

	b, err := newBench(ctx, o, binary, stderr)
	if err != nil {
		return err
	}
	if b.runs("peers") {
		if b.peers, err = buildPeers(ctx, dir, stderr); err != nil {
			return err
		}
	}
	defer b.close()
	start := time.Now()
	report, err := b.all(ctx)
	if err != nil {
		return err
	}
	report += fmt.Sprintf("\nMeasured in %s with `make bench` (`go run ./cmd/jobrelay-bench -runs %d -jobs %d`).\n",
		time.Since(start).Round(time.Second), o.runs, o.jobs)
	fmt.Fprint(stdout, report)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(benchmarksHeader+report+benchmarksNotes), 0o644) //nolint:gosec // BENCHMARKS.md is committed and read by everyone
	}
	return nil
}

const benchmarksHeader = `# Benchmarks

What jobrelay does per second on one machine, next to what its PostgreSQL
and Redis can do at all, measured in one run by ` + "`make bench`" + `. The
limits use the very statements jobrelay runs (the relay's claim, update and
commit without Redis; pipelined XADD of the same entries without
PostgreSQL), so each ratio says how much of the servers' capacity the
relay's own work leaves unused. Throughputs are medians of the runs; every
run drains a fresh schema. The machine is shared and noisy: compare ratios
within one run, not absolute figures across runs.

`

const benchmarksNotes = `
## Reading it

- **The limits.** "PostgreSQL limit" drains the same jobs with the relay's
  own claim, UPDATE and COMMIT and no Redis; "Redis limit" adds the same
  entries with pipelined XADD and no PostgreSQL. Every job costs PostgreSQL
  a locked row and a non-HOT row update (status is in the partial indexes'
  predicates), which is most of the machine's two cores.
- **One relay.** With ` + "`RELAY_WORKERS=1`" + ` a relay runs one cycle at a time:
  claim, publish, commit, so PostgreSQL waits while Redis works and the
  ratio to one connection is what the idempotent publish leaves. By default a
  relay drains a backlog with two cycles side by side; it then uses two
  connections and the page shows both ratios.
- **Three relays** share the machine's two cores with PostgreSQL and Redis;
  at batch 1000 six connections contend for the same rows and pages, and
  three relays are no faster than one.
- **Consumers** record outcomes with one UPDATE and one XACK per batch of
  finished jobs. With a handler that does nothing, two consumers are bound by
  PostgreSQL's row updates (each another non-HOT update) on this 2-core
  machine; the target of 100,000 jobs/s for two consumers is missed there.
  A review that takes seconds, as a model call does, is bound by
  ` + "`CONCURRENCY`" + `, not by this.
- **Latency** is from the INSERT's commit, as the inserting client sees it,
  to the entry being readable by a plain XREAD, and to the handler's HTTP
  request arriving.
- **Idle**: after start-up, an idle relay sends nothing but what its poll
  interval and LISTEN connection need (none within 10 s here).
`

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
