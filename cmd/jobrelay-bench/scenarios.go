package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// pgLimit drains the jobs with the relay's own statements and no Redis:
// BEGIN + claim, then UPDATE + COMMIT, with stand-in entry IDs, by
// workers connections in parallel. What the relay can at best approach.
func (b *bench) pgLimit(ctx context.Context, batch, workers int) (float64, cpuSplit, error) {
	p, err := b.newPipeline(ctx, b.o.jobs)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	defer p.drop()
	return b.claimLoop(ctx, p, batch, workers, db.BeginClaim)
}

// claimFunc begins a transaction and claims up to limit pending jobs, as
// db.BeginClaim does.
type claimFunc func(ctx context.Context, conn *pgx.Conn, limit int, dst []db.Job) ([]db.Job, error)

// claimLoop runs the relay's transactions without Redis on p's pending
// jobs, one loop per connection: claim, update to in_review, commit. It
// returns jobs/s once every job is in_review, and who spent the CPU.
func (b *bench) claimLoop(ctx context.Context, p *pipeline, batch, workers int, claim claimFunc) (float64, cpuSplit, error) {
	conns, closeAll, err := p.connect(ctx, workers)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	defer closeAll()
	return b.measureLoop(ctx, p, conns, closeAll, func(_ int, conn *pgx.Conn) error {
		var jobs []db.Job
		var done standIns
		for {
			var err error
			if jobs, err = claim(ctx, conn, batch, jobs); err != nil {
				return err
			}
			if len(jobs) == 0 {
				return db.Rollback(ctx, conn)
			}
			if err := db.CommitInReview(ctx, conn, done.params(jobs)); err != nil {
				return err
			}
		}
	})
}

// measureLoop runs loop on each connection until p's jobs are all
// in_review, and returns jobs/s and who spent the CPU meanwhile. It closes
// the connections (closeAll) to read what their index scans read.
func (b *bench) measureLoop(ctx context.Context, p *pipeline, conns []*pgx.Conn, closeAll func(), loop func(int, *pgx.Conn) error) (float64, cpuSplit, error) {
	reads, err := b.readIndexReads(ctx, p.schema)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	before, err := b.readCPU(ctx)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	elapsed, err := eachConn(conns, loop)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	after, err := b.readCPU(ctx)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	split := after.split(before, after.self-before.self, elapsed, b.o.jobs)
	pids := make([]uint32, len(conns))
	for i, c := range conns {
		pids[i] = c.PgConn().PID()
	}
	closeAll()
	if err := b.waitBackendsGone(ctx, "pid = ANY($1)", pids); err != nil {
		return 0, cpuSplit{}, err
	}
	if split.reads, err = b.readIndexReads(ctx, p.schema); err != nil {
		return 0, cpuSplit{}, err
	}
	split.reads = split.reads.sub(reads)
	return float64(b.o.jobs) / elapsed.Seconds(), split, p.check(ctx, db.StatusInReview, b.o.jobs)
}

// waitBackendsGone waits until pg_stat_activity holds no backend that
// where (a condition on its columns, with args) matches: a backend whose
// client has gone leaves a moment later, and only then are its CPU time
// its postmaster's to read and its index counts sent.
func (b *bench) waitBackendsGone(ctx context.Context, where string, args ...any) error {
	return waitFor(ctx, 30*time.Second, func() bool {
		var n int
		err := b.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE `+where, args...).Scan(&n)
		return err == nil && n == 0
	})
}

// standIns records claimed jobs as the relay would, with stand-in entry
// IDs; its slices are reused from batch to batch.
type standIns struct{ ids, streamIDs []string }

// params is what marks jobs in_review.
func (s *standIns) params(jobs []db.Job) *db.InReviewParams {
	s.ids, s.streamIDs = s.ids[:0], s.streamIDs[:0]
	for i := range jobs {
		s.ids = append(s.ids, jobs[i].ID)
		s.streamIDs = append(s.streamIDs, "1-"+strconv.Itoa(i))
	}
	return &db.InReviewParams{IDs: s.ids, StreamIDs: s.streamIDs, EnqueuedAt: time.Now()}
}

// pgPipelinedLimit is pgLimit with each COMMIT carrying the next claim in
// its round trip, as the relay sends them while it drains a backlog: one
// round trip per batch instead of two.
func (b *bench) pgPipelinedLimit(ctx context.Context, batch, workers int) (float64, cpuSplit, error) {
	p, err := b.newPipeline(ctx, b.o.jobs)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	defer p.drop()
	conns, closeAll, err := p.connect(ctx, workers)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	defer closeAll()
	return b.measureLoop(ctx, p, conns, closeAll, func(_ int, conn *pgx.Conn) error {
		claim := &db.ClaimParams{Limit: batch}
		jobs, spare := make([]db.Job, 0, batch), make([]db.Job, 0, batch)
		jobs, _, err := db.BeginClaimWith(ctx, conn, claim, jobs)
		if err != nil {
			return err
		}
		var done standIns
		for len(jobs) > 0 {
			next, _, _, err := db.CommitInReviewAndClaim(ctx, conn, done.params(jobs), claim, spare)
			if err != nil {
				return err
			}
			jobs, spare = next, jobs
		}
		return db.Rollback(ctx, conn)
	})
}

// redisLimit adds the jobs' entries with pipelined XADD in batches, one
// client, no PostgreSQL, no dedup, and says who spent the CPU: the Redis
// server's share is the least any relay costs Redis per job.
func (b *bench) redisLimit(ctx context.Context, batch int) (float64, cpuSplit, error) {
	s := "bench:xadd:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	defer b.rdb.Unlink(context.Background(), s)
	enq := time.Now().UTC().Format(time.RFC3339Nano)
	before, err := b.readCPU(ctx)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	start := time.Now()
	for done := 0; done < b.o.jobs; done += batch {
		_, err := b.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i := range min(batch, b.o.jobs-done) {
				n := done + i
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{
					"job_id", "0b3e4a4e-9a57-4a0c-8f4e-" + fmt.Sprintf("%012d", n), "site", "linkedin",
					"title", "Senior Site Reliability Engineer", "company", "Hooli Analytics",
					"job_url", "https://jobs.example.com/" + strconv.Itoa(n), "attempt", "1", "enqueued_at", enq}})
			}
			return nil
		})
		if err != nil {
			return 0, cpuSplit{}, err
		}
	}
	elapsed := time.Since(start)
	after, err := b.readCPU(ctx)
	if err != nil {
		return 0, cpuSplit{}, err
	}
	return float64(b.o.jobs) / elapsed.Seconds(), after.split(before, after.self-before.self, elapsed, b.o.jobs), nil
}

// relayRun drains the jobs with replicas `jobrelay relay --once` processes
// of RELAY_WORKERS workers.
// It returns jobs/s and the largest peak RSS of the processes.
func (b *bench) relayRun(ctx context.Context, batch, replicas, workers, jobs int) (float64, int64, error) {
	return b.relayRunWith(ctx, batch, replicas, workers, jobs, nil)
}

// relayRunWith is relayRun with prepare run on the pipeline before the
// relays start, and extra settings.
func (b *bench) relayRunWith(ctx context.Context, batch, replicas, workers, jobs int,
	prepare func(context.Context, *pipeline) error, extra ...string,
) (float64, int64, error) {
	r, err := b.relayDrain(ctx, batch, replicas, workers, jobs, prepare, extra...)
	return r.rate, r.peak, err
}

// relayResult is what a relay run measured.
type relayResult struct {
	rate float64 // jobs/s
	peak int64   // the largest peak RSS of the processes
	cpu  cpuSplit
}

// relayDrain is relayRunWith, with who spent the CPU.
func (b *bench) relayDrain(ctx context.Context, batch, replicas, workers, jobs int,
	prepare func(context.Context, *pipeline) error, extra ...string,
) (relayResult, error) {
	var res relayResult
	p, err := b.newPipeline(ctx, jobs)
	if err != nil {
		return res, err
	}
	defer p.drop()
	if prepare != nil {
		if err := prepare(ctx, p); err != nil {
			return res, err
		}
	}
	env := p.env(append([]string{"BATCH_SIZE=" + strconv.Itoa(batch), "RELAY_WORKERS=" + strconv.Itoa(workers), "MAX_STREAM_LAG=0", "LOG_LEVEL=info"}, extra...)...)
	reads, err := b.readIndexReads(ctx, p.schema)
	if err != nil {
		return res, err
	}
	before, err := b.readCPU(ctx)
	if err != nil {
		return res, err
	}
	start := time.Now()
	procs := make([]*proc, replicas)
	for i := range procs {
		if procs[i], err = p.start(env, "relay", "--once"); err != nil {
			return res, err
		}
	}
	var client float64
	for _, pr := range procs {
		if err := pr.wait(ctx); err != nil {
			return res, fmt.Errorf("relay --once: %w", err)
		}
		res.peak = max(res.peak, pr.peakRSS())
		client += (pr.cmd.ProcessState.UserTime() + pr.cmd.ProcessState.SystemTime()).Seconds()
	}
	elapsed := time.Since(start)
	// The backends of the relays that exited.
	if err := b.waitBackendsGone(ctx, "application_name IN ('jobrelay relay', 'jobrelay listener')"); err != nil {
		return res, err
	}
	after, err := b.readCPU(ctx)
	if err != nil {
		return res, err
	}
	res.cpu = after.split(before, client, elapsed, jobs)
	if res.cpu.reads, err = b.readIndexReads(ctx, p.schema); err != nil {
		return res, err
	}
	res.cpu.reads = res.cpu.reads.sub(reads)
	if err := p.check(ctx, db.StatusInReview, jobs); err != nil {
		return res, err
	}
	n, err := b.rdb.XLen(ctx, p.stream).Result()
	if err != nil {
		return res, err
	}
	if n != int64(jobs) {
		return res, fmt.Errorf("relay: %d entries for %d jobs", n, jobs)
	}
	res.rate = float64(jobs) / elapsed.Seconds()
	return res, nil
}

// oldPoller is the pattern jobrelay replaces: read 100 pending jobs, then
// for each one XADD it and UPDATE it in a transaction of its own.
func (b *bench) oldPoller(ctx context.Context) (float64, error) {
	p, err := b.newPipeline(ctx, b.o.pollerJobs)
	if err != nil {
		return 0, err
	}
	defer p.drop()
	enq := time.Now().UTC().Format(time.RFC3339Nano)
	start := time.Now()
	for {
		jobs, err := db.PendingBatch(ctx, p.pool, 100)
		if err != nil {
			return 0, err
		}
		if len(jobs) == 0 {
			break
		}
		for _, j := range jobs {
			id, err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: p.stream, Values: []any{
				"job_id", j.ID, "site", j.Site.String, "title", j.Title.String, "company", j.Company.String,
				"job_url", j.JobURL.String, "attempt", "1", "enqueued_at", enq}}).Result()
			if err != nil {
				return 0, err
			}
			if err := db.MarkOneInReview(ctx, p.pool, j.ID, id); err != nil {
				return 0, err
			}
		}
	}
	return float64(b.o.pollerJobs) / time.Since(start).Seconds(), p.check(ctx, db.StatusInReview, b.o.pollerJobs)
}

// consumers reviews the published jobs with n `jobrelay consume`
// processes whose handler does nothing (the log handler with logging at
// warn), the status update and XACK included. It returns jobs/s and the
// largest peak RSS.
func (b *bench) consumers(ctx context.Context, n, concurrency int) (float64, int64, error) {
	p, err := b.publishedPipeline(ctx, b.o.jobs)
	if err != nil {
		return 0, 0, err
	}
	defer p.drop()
	env := p.env("LOG_LEVEL=warn", "HANDLER=log", "CONCURRENCY="+strconv.Itoa(concurrency))
	start := time.Now()
	procs := make([]*proc, n)
	for i := range procs {
		if procs[i], err = p.start(env, "consume"); err != nil {
			return 0, 0, err
		}
	}
	// Done when the group has read everything and acknowledged it: jobs
	// are marked reviewed before their XACK. Polling Redis, not the table,
	// keeps the measurement off the server being measured.
	for {
		groups, err := b.rdb.XInfoGroups(ctx, p.stream).Result()
		if err == nil && len(groups) == 1 && groups[0].Lag == 0 && groups[0].Pending == 0 && groups[0].EntriesRead >= int64(b.o.jobs) {
			break
		}
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	var peak int64
	for _, pr := range procs {
		peak = max(peak, pr.peakRSS())
		if err := pr.stop(); err != nil {
			return 0, 0, fmt.Errorf("consume: %w", err)
		}
	}
	return float64(b.o.jobs) / elapsed.Seconds(), peak, p.check(ctx, db.StatusReviewed, b.o.jobs)
}

// latencies are percentiles of one latency run, in milliseconds.
type latencies struct{ toEntry, toHandler [3]float64 } // p50, p99, max

// latency inserts jobs one by one at a steady rate into a pipeline of one
// relay (default POLL_INTERVAL: wake-ups come from NOTIFY) and one
// consumer, and measures from each INSERT's commit to its entry being
// readable in the stream, and to its handler starting.
func (b *bench) latency(ctx context.Context) (latencies, error) {
	var res latencies
	p, err := b.newPipeline(ctx, 0)
	if err != nil {
		return res, err
	}
	defer p.drop()

	var mu sync.Mutex
	committed, entry := map[string]time.Time{}, map[string]time.Time{}
	review, err := startReviewService(ctx, 0, nil)
	if err != nil {
		return res, err
	}
	defer review.close()

	env := p.env("LOG_LEVEL=warn", review.handler())
	if b.o.latencyPoll != "" {
		env = append(env, "POLL_INTERVAL="+b.o.latencyPoll)
	}
	stop, err := p.startRelayAndConsumer(env)
	if err != nil {
		return res, err
	}
	defer stop()

	// A reader outside the group sees each entry as soon as it exists.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		last := "0-0"
		for rctx.Err() == nil {
			res, err := b.rdb.XRead(rctx, &redis.XReadArgs{Streams: []string{p.stream, last}, Block: time.Second, Count: 1000}).Result()
			now := time.Now()
			if err != nil {
				continue
			}
			mu.Lock()
			for _, m := range res[0].Messages {
				id, _ := m.Values[stream.FieldJobID].(string)
				entry[id] = now
				last = m.ID
			}
			mu.Unlock()
		}
	}()

	// Wait until the relay listens and the consumer's group exists.
	if err := waitFor(ctx, 30*time.Second, func() bool {
		groups, err := b.rdb.XInfoGroups(ctx, p.stream).Result()
		return err == nil && len(groups) == 1
	}); err != nil {
		return res, fmt.Errorf("pipeline did not start: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // the relay's first cycle and LISTEN

	ticker := time.NewTicker(time.Second / time.Duration(b.o.rate))
	defer ticker.Stop()
	deadline := time.Now().Add(b.o.latencyFor)
	for time.Now().Before(deadline) {
		<-ticker.C
		id, err := db.InsertJob(ctx, p.pool, db.NewJob{Site: "otta", Title: "Latency probe", Company: "Acme", JobURL: "https://x"})
		if err != nil {
			return res, err
		}
		now := time.Now()
		mu.Lock()
		committed[id] = now
		mu.Unlock()
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return review.count() >= len(committed) && len(entry) >= len(committed)
	}); err != nil {
		return res, fmt.Errorf("not every job arrived: %w", err)
	}
	cancel()
	<-readerDone
	mu.Lock()
	defer mu.Unlock()
	var toEntry []float64
	for id, t := range committed {
		toEntry = append(toEntry, float64(entry[id].Sub(t).Microseconds())/1000)
	}
	res.toEntry = percentiles(toEntry)
	res.toHandler = percentiles(review.since(committed))
	return res, nil
}

func percentiles(v []float64) [3]float64 {
	slices.Sort(v)
	at := func(q float64) float64 {
		i := int(q * float64(len(v)-1))
		return v[i]
	}
	return [3]float64{at(0.5), at(0.99), v[len(v)-1]}
}

// idleRelay runs a relay with nothing to do and reports the queries and
// Redis commands it sends over the period (besides its LISTEN).
func (b *bench) idleRelay(ctx context.Context, period time.Duration) (queries, commands int, err error) {
	p, err := b.newPipeline(ctx, 0)
	if err != nil {
		return 0, 0, err
	}
	defer p.drop()
	pr, err := p.start(p.env("LOG_LEVEL=warn"), "relay")
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = pr.stop() }()
	time.Sleep(2 * time.Second) // start-up: first cycle, reaper, LISTEN
	before, err := b.activity(ctx, p)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(period)
	after, err := b.activity(ctx, p)
	if err != nil {
		return 0, 0, err
	}
	for k, v := range after {
		if before[k] != v {
			if strings.HasPrefix(k, "redis ") {
				commands++
			} else {
				queries++
			}
		}
	}
	return queries, commands, nil
}

// activity identifies the last statement of each of the relay's database
// sessions and the last command of its Redis connections: if none
// changes, the relay sent nothing.
func (b *bench) activity(ctx context.Context, _ *pipeline) (map[string]string, error) {
	out := map[string]string{}
	rows, err := b.admin.Query(ctx, `
SELECT pid::text, coalesce(query_start::text, '') || ' ' || coalesce(state_change::text, '')
FROM pg_stat_activity WHERE application_name IN ('jobrelay relay', 'jobrelay listener', 'jobrelay')
  AND pid <> pg_backend_pid() AND datname = current_database()`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var pid, at string
		if err := rows.Scan(&pid, &at); err != nil {
			return nil, err
		}
		out["pg "+pid] = at
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	clients, err := b.rdb.ClientList(ctx).Result()
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(clients) {
		f := map[string]string{}
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == "jobrelay" {
			// idle grows by one every second without a command.
			idle, _ := strconv.Atoi(f["idle"])
			age, _ := strconv.Atoi(f["age"])
			out["redis "+f["id"]] = strconv.Itoa(age - idle)
		}
	}
	return out, nil
}

// check verifies that want jobs ended in status.
func (p *pipeline) check(ctx context.Context, status string, want int) error {
	c, err := p.counts(ctx)
	if err != nil {
		return err
	}
	if c[status] != int64(want) {
		return fmt.Errorf("%d jobs %s, want %d: %v", c[status], status, want, c)
	}
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
