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
	"strconv"
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
	clusterJobs int
	tableSizes  []int
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
	fs.IntVar(&o.clusterJobs, "cluster-jobs", 50_000, "jobs per run of the scale-out scenario (single Redis against a 3-primary cluster)")
	fs.StringVar(&o.latencyPoll, "latency-poll-interval", "", "POLL_INTERVAL of the relay in the latency runs (default: jobrelay's, 5m)")
	fs.StringVar(&o.out, "out", "", "also write the report to this file (BENCHMARKS.md)")
	only := fs.String("only", "", "comma-separated parts to run, for quicker looks: limits, relay, poller, consumers, latency, memory, idle, table, cluster, fairness, overtaking, peers, steady, hot, rediscost (default all)")
	sizes := fs.String("table-sizes", "1000000,10000000", "reviewed jobs in the tables of the table part (claim, reaper, status and archiver times against table size)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *only != "" {
		o.only = map[string]bool{}
		for part := range strings.SplitSeq(*only, ",") {
			o.only[strings.TrimSpace(part)] = true
		}
	}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-table-sizes: %q is not a number of jobs", s)
		}
		o.tableSizes = append(o.tableSizes, n)
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
	cmd := fmt.Sprintf("go run ./cmd/jobrelay-bench -runs %d -jobs %d -cluster-jobs %d", o.runs, o.jobs, o.clusterJobs)
	how := "`make bench` (`" + cmd + "`)"
	if o.only != nil {
		how = "`" + cmd + " -only " + *only + "`"
	}
	report += fmt.Sprintf("\nMeasured in %s with %s.\n", time.Since(start).Round(time.Second), how)
	fmt.Fprint(stdout, report)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(benchmarksHeader+report+benchmarksNotes), 0o644) //nolint:gosec // BENCHMARKS.md is committed and read by everyone
	}
	return nil
}

const benchmarksHeader = `# Benchmarks

What jobrelay does per second on one machine, next to what its PostgreSQL
and Redis can do at all, and next to the peers users would otherwise pick,
measured in one run by ` + "`make bench`" + `. The limits use the very
statements jobrelay runs (the relay's claim, update and commit without
Redis; pipelined XADD of the same entries without PostgreSQL; the simplest
consumer loop on the same schema), so each ratio says how much of the
servers' capacity jobrelay's own work leaves unused. Every throughput is the
median of the runs, interleaved (each round runs every scenario once); every
run drains a fresh schema. The machine is shared and noisy: compare ratios
within one run, not absolute figures across runs.

`

const benchmarksNotes = `
## Reading it

- **The limits.** "PostgreSQL limit" drains the same jobs with the relay's
  own claim, UPDATE and COMMIT and no Redis, in the simplest loop: claim in
  one round trip, update and commit in a second. The relay's targets are
  set against it. "Pipelined" sends the same statements as the relay does
  while it drains a backlog: each COMMIT carries the next batch's claim,
  one round trip per batch. "Redis limit" adds the same entries with
  pipelined XADD and no PostgreSQL. Every job costs PostgreSQL a locked
  row and a non-HOT row update (status is in the partial indexes'
  predicates), which is most of the machine's two cores.
- **One relay.** With ` + "`RELAY_WORKERS=1`" + ` a relay has one connection. While
  a backlog drains, each of its transactions carries two batches: the
  second is claimed while the first is published, and published while the
  first's UPDATE runs, so PostgreSQL and Redis work at the same time for
  most of the transaction. The "serial ceiling" is the most a relay that
  works in turn on one connection (claim, publish, commit) could do on this
  machine: the pipelined PostgreSQL limit and the Redis limit (plain
  pipelined XADD, no dedup records) one after the other, with no cost of
  its own; overlapping is how the relay gets past it. Overlapping the
  halves of one batch (claim the second half while Redis adds the first)
  was tried before and was no faster; claiming a whole second batch ahead
  made one worker 23% faster and left two where they were (` + "`go test -run '^$' -bench 'RelayCycle/batch=100(/workers=1)?$' -benchtime 100000x ./relay`" + `,
  medians of 3 interleaved runs, 8948589 against 6c51916: 13,566 → 16,669
  and 21,606 → 21,668 jobs/s). Carrying the next claim with the COMMIT
  saves one round trip of two per batch, and made the relay 14% faster
  with one worker and 12% with two (` + "`go test -run '^$' -bench 'RelayCycle/batch=100(/workers=1)?$' -benchtime 30000x ./relay`" + `,
  medians of 5 interleaved runs against 6dd12dd). By default a relay
  drains a backlog with two cycles side by side; it then uses two
  connections and the page shows both ratios.
- **CPU per job** says what each ratio is made of: the CPU seconds of the
  client (the limit's loop in this program, or the relay processes), of
  every postgres process (background writers and exited backends
  included) and of the Redis server, over the jobs drained, and the cores
  they kept busy on average (jobs/s ≈ cores busy / all). A relay does the
  limit's PostgreSQL work plus a publish: the Redis server's part of it
  (the script's XADDs and dedup records, about twice a plain pipelined
  XADD) and its own (building the script call, reading the entry IDs).
  With one worker the parts overlap only within a transaction (cores busy
  a little over one); with two, the machine's two cores are shared by
  PostgreSQL, Redis and the relay, and the ratio to the limit can be no
  better than the limit's CPU per job over the relay's. The "CPU ceiling"
  row is that bound for a relay with no cost of its own whose publish
  costs Redis only what a plain pipelined XADD does (the Redis limit's
  row here): the 2-connection limit's CPU per job plus that, on the cores
  the limit kept busy. What separates the default relay from it is the
  relay's own client work, its publish script (see Redis instructions
  below) and the extra index reads below. PostgreSQL's own
  part is often larger under the relay than in the limit's loop although
  the statements are the same (the cycle timeout's SET LOCAL, the aging
  claim and real stream names and entry IDs in the UPDATE made no
  measurable difference in the pipelined loop: throwaway A/B, 3
  interleaved runs of each on 2026-11-29). The last two columns, from
  ` + "`pg_stat_user_indexes`" + ` over the run's schema, say why: a claim reads
  the index entries of rows it cannot take as well, those locked by
  another transaction and those updated so recently that a transaction
  still open keeps PostgreSQL from marking their entries dead, and each
  costs a visit to its row. A relay's transaction lasts as long as its
  publishes, and carries two batches while a backlog drains, so it holds
  more locks for longer than the loop's, and with two workers each claim
  passes over more of the other's rows. Most of what they pass over is
  not locked rows but entries of rows already committed in_review: a
  throwaway change that listed the other worker's locked rows in each
  claim's Except read 9.78 entries per job instead of 10.10 and was no
  faster (three interleaved pairs of 200,000-job drains on 2026-11-30,
  57,146/55,360/55,594 against 57,462/55,492/55,122 jobs/s). Claims that
  start where the last one ended pass over neither: a throwaway keyset
  claim (an index on priority DESC, created_at, id; every fourth claim
  from the head, for the jobs that land behind it) read 6.5 entries per
  job instead of 10.1, and was no faster either (50,019/51,513/51,862
  against 47,862/52,894/52,084). Its id tie-breaker also scatters the
  rows of one INSERT (one created_at) over the heap. So the extra reads
  cost little, and the relay's own part (client and Redis) is what is
  left. (Each job's UPDATE adds one entry and one row, of the primary
  key.)
- **Redis instructions per job** are counted by callgrind (Debian's
  valgrind) in a redis-server of the run's own, inside ` + "`EVALSHA`" + ` only: a
  count, not a time, so it is the same from run to run whatever the machine
  does. The publish script is measured as the relay calls it, each call
  deleting the records of the batch before; the floor is the same entries
  added by a script that keeps no records. The same command on eb45784,
  before one expiry per batch (09cf1cf), gave 64,483 instructions per job
  for the publish script, 3.05 times the floor. In time, Redis's
  ` + "`INFO commandstats`" + ` over a 200,000-job drain with two workers
  (2026-11-30) gave 4.89 µs per job in EVALSHA: 0.92 in the XADDs, 0.52 in
  the dedup records' commands, and 3.45 in Lua and its calls into Redis.
  A plain pipelined XADD costs the server about 1.9 µs per job all told
  (the CPU table's Redis limit row), so an XADD from a script is what
  costs most; a publish without a script, which keeps the at most once
  per attempt guarantee under a paused relay, is the larger change left.
- **Three relays** share the machine's two cores with PostgreSQL and Redis;
  at batch 1000 six connections contend for the same rows and pages, and
  three relays are no faster than one.
- **The consumers' limit** is the simplest loop on the project's schema,
  one goroutine per connection: XREADGROUP COUNT 100, one
  ` + "`UPDATE jobs SET status = 'reviewed' … WHERE id = ANY($1) AND status = 'in_review'`" + `
  (autocommit), one XACK. Every consumer row's ratio is to that loop with 2
  connections.
- **Consumers** fetch for their idle handlers plus a bounded prefetch while
  handlers are fast (see README, "Prefetch: the trade-off"), and record
  outcomes with one UPDATE and one XACK per batch of finished jobs, two
  recorders per consumer. With a handler that does nothing they are bound
  by PostgreSQL's row updates (each a non-HOT update) on this 2-core
  machine. A review that takes seconds, as a model call does, is bound by
  ` + "`CONCURRENCY`" + `, not by this. The group exists before the entries,
  as in service.
- **The peers** run from their own module (` + "`cmd/jobrelay-bench/peers`" + `,
  so jobrelay's go.mod carries neither) on the same servers, with jobs made
  by the same migrations and generator, ` + "`-peer-jobs`" + ` per run: Watermill's
  SQL outbox Forwarder (watermill-sql v4, PostgreSQL schema and offsets
  adapters at their defaults) to watermill-redisstream v1.4.5, draining an
  outbox of one message per job written beforehand (the rows stay
  pending_review: Watermill does not know them); watermill-redisstream
  subscribers in one group, each message handled as Watermill delivers it
  (one at a time per subscriber): one UPDATE, then Ack; asynq v0.26.0,
  enqueueing one task per job (no transaction with the row: it is not an
  outbox), and two servers of concurrency 8 whose handler runs the same
  UPDATE. "jobrelay N×" is how many times faster jobrelay's row is: the
  default relay for publishing, two default consumers for consuming.
- **Steady-rate cost**: jobs inserted one per transaction at a steady rate
  through one relay and two consumers at their defaults, with an HTTP
  handler served by the benchmark. CPU from ` + "`/proc/<pid>/stat`" + `: the three
  jobrelay processes; the PostgreSQL backends serving them (found by an
  application_name of the run's); every postgres process (server-wide, so it
  includes the inserts, the WAL writer and checkpointer, and whatever else
  the machine runs); a Redis server started for the run. At this rate most
  relay cycles and recorder batches carry one or a few jobs, so the cost per
  job is mostly round trips: a CPU profile of the same pipeline in one
  process is ` + "`go test -run '^$' -bench SteadyRate -cpuprofile cpu.prof ./consumer/`" + `.
- **HOT experiment**: the consumers' limit loop, and the relay's (the
  PostgreSQL limit's claim, update and commit), on variants of the schema,
  to see whether letting the consumer's update be a heap-only tuple update
  pays: on PostgreSQL 15 no update of a column that any index mentions,
  predicates included, can be HOT, and every partial index of jobrelay's
  names ` + "`status`" + ` (the archiver's also ` + "`updated_at`" + `, which the
  consumer's update sets). "No index mentions status" drops every index
  but the primary key and claims by a trigger-kept ` + "`pending_since`" + `
  (the relay's claim uses it), with one index on ` + "`enqueued_at`" + ` for the
  reaper. jobrelay keeps its schema, with no migration for this. The win
  is not steady: at fillfactor 50 (every consumer update HOT) the
  consumers' loop ran at 1.28, 1.18, 0.90, 1.14 and 1.28 of the schema's in
  five ` + "`-only hot`" + ` and full runs on 2026-11-29 (three machines), the relay's
  loop at 1.01, 0.86, 0.81 and 0.93; and what it costs is: HOT for the consumer's update means that
  no index can tell an in_review
  row from a reviewed one, so the reaper's index holds every job ever
  enqueued and each reaper pass walks past all of them, and the archiver
  has no index left at all; the table part shows both must stay flat in
  the table's size. A side table of the work in flight would keep them
  flat, at the price of an insert and a delete per job instead of the
  non-HOT update it saves.
- **Latency** is from the INSERT's commit, as the inserting client sees it,
  to the entry being readable by a plain XREAD, and to the handler's HTTP
  request arriving.
- **Scaling out** runs 3 relays and 2 consumers (no-op handler,
  ` + "`CONCURRENCY=64`" + `) from start until every job is reviewed, on a
  redis-server of the benchmark's own and on a 3-primary Redis Cluster
  (no replicas) with ` + "`STREAM_PARTITIONS`" + ` 1, 3 and 6. The Redis CPU time
  is read from /proc (utime + stime of every node) before and after. On
  one 2-core machine the nodes share the cores with PostgreSQL and the
  processes, so jobs/s cannot grow with nodes; what the cluster changes is
  how the Redis work is spread, which the busiest node's CPU time per job
  shows: on 3 machines, Redis stops being the bound at 1 s divided by it.
- **Idle**: after start-up, an idle relay sends nothing but what its poll
  interval and LISTEN connection need (none within 10 s here).
- **A table of millions** holds reviewed jobs built by the server (about 12 s
  per million rows), next to a few thousand pending and in_review ones. The
  claim, the reaper's page and the metrics' backlog read the partial indexes
  on pending_review and in_review rows, whose size is the backlog's, not the
  table's. ` + "`jobrelay status`" + ` counts those and the failed jobs the
  same way and, from a million rows, estimates the reviewed and archived
  ones from the table's statistics; the exact count it did before is shown
  for comparison. The archiver's batch reads the partial index on reviewed
  rows by updated_at (the batch is rolled back, so each run finds the same
  rows).
`

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
