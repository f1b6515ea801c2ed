package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Priorities and tenants (part "fairness"): what fair claims cost the
// relay, and how long an urgent job, or another tenant's, waits behind a
// backlog from its INSERT to its handler, with and without the features.

// spreadSQL gives the pending jobs of a pipeline a tenant out of $1, or a
// priority out of $2 levels, in turn, $3 jobs in a row, in the table's
// physical order.
const spreadSQL = `
WITH n AS (SELECT id, (row_number() OVER (ORDER BY ctid) - 1) / $3::int AS i FROM jobs)
UPDATE jobs SET tenant = CASE WHEN $1::int > 0 THEN 'tenant' || (n.i % $1::int) END,
                priority = CASE WHEN $2::int > 0 THEN (n.i % $2::int) ELSE 0 END
FROM n WHERE jobs.id = n.id`

// relaySpread is relayRun (batch 100, one replica, two workers) over jobs
// spread over tenants or priority levels, run jobs in a row, with env
// added.
func (b *bench) relaySpread(ctx context.Context, tenants, levels, run int, env ...string) (float64, int64, error) {
	prepare := func(ctx context.Context, p *pipeline) error {
		if _, err := p.pool.Exec(ctx, spreadSQL, tenants, levels, run); err != nil {
			return fmt.Errorf("spread jobs: %w", err)
		}
		for _, sql := range []string{"VACUUM ANALYZE jobs", "CHECKPOINT"} {
			if _, err := p.pool.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	}
	return b.relayRunWith(ctx, 100, 1, 2, b.o.jobs, prepare, env...)
}

// overtakeResult is how long the probes took from their INSERT's commit
// to their handler, and how much of the backlog was reviewed by then.
type overtakeResult struct {
	p50, max     float64 // seconds
	backlogSeen  int     // backlog jobs handled before the last probe
	backlogTotal int
}

// overtakeRun puts backlog jobs (of tenant, if set) in a pipeline of one
// relay (with env) and one consumer (CONCURRENCY 8, an HTTP handler that
// answers after 1 ms), waits until they flow and the relay has relayed all
// it may (nothing pending, or held back by MAX_STREAM_LAG), then inserts
// probes jobs with priority and tenant in one statement, and measures from
// its commit to each probe's handler.
func (b *bench) overtakeRun(ctx context.Context, env []string, backlog int, tenant string, probes, priority int, probeTenant string) (overtakeResult, error) {
	var res overtakeResult
	p, err := b.newPipeline(ctx, backlog)
	if err != nil {
		return res, err
	}
	defer p.drop()
	if tenant != "" {
		if _, err := p.pool.Exec(ctx, `UPDATE jobs SET tenant = $1`, tenant); err != nil {
			return res, err
		}
	}

	var mu sync.Mutex
	handled := 0
	var probeAt []time.Time
	probeTitle := "Overtaking probe"
	// A review that takes a millisecond: consumers are slower than the
	// relay, as with any real review, so a backlog builds up.
	review, err := startReviewService(ctx, time.Millisecond, func(title string, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if title == probeTitle {
			probeAt = append(probeAt, at)
			if len(probeAt) == probes {
				res.backlogSeen = handled
			}
		} else {
			handled++
		}
	})
	if err != nil {
		return res, err
	}
	defer review.close()

	env = append(p.env("LOG_LEVEL=warn", review.handler(), "CONCURRENCY=8"), env...)
	stop, err := p.startRelayAndConsumer(env)
	if err != nil {
		return res, err
	}
	defer stop()

	// The backlog flows, and the relay went as far as it may.
	if err := waitFor(ctx, time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled >= 1000
	}); err != nil {
		return res, fmt.Errorf("backlog did not flow: %w", err)
	}
	if err := waitFor(ctx, time.Minute, func() bool {
		var pending int
		if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'pending_review'`).Scan(&pending); err != nil {
			return false
		}
		n, err := b.rdb.XLen(ctx, p.stream).Result()
		return err == nil && (pending == 0 || n >= 900) // 900: MAX_STREAM_LAG 1000 less what consumers read meanwhile
	}); err != nil {
		return res, fmt.Errorf("relay did not fill the stream: %w", err)
	}

	if _, err := p.pool.Exec(ctx, `
INSERT INTO jobs (site, job_url, title, company, priority, tenant)
SELECT 'otta', 'https://x', $2, 'Acme', $3, NULLIF($4, '') FROM generate_series(1, $1)`, probes, probeTitle, priority, probeTenant); err != nil {
		return res, err
	}
	committed := time.Now()
	if err := waitFor(ctx, 5*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(probeAt) >= probes
	}); err != nil {
		return res, fmt.Errorf("not every probe reached its handler: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	waits := make([]float64, len(probeAt))
	for i, t := range probeAt {
		waits[i] = t.Sub(committed).Seconds()
	}
	slices.Sort(waits)
	res.p50, res.max = waits[len(waits)/2], waits[len(waits)-1]
	res.backlogTotal = backlog
	return res, nil
}

// fairnessReport measures the parts "fairness" (throughput) and
// "overtaking" (latency behind a backlog) and returns their tables.
func (b *bench) fairnessReport(ctx context.Context) (string, error) {
	var sb strings.Builder
	if b.runs("fairness") {
		if err := b.fairnessThroughput(ctx, &sb); err != nil {
			return "", err
		}
	}
	if b.runs("overtaking") {
		if err := b.overtaking(ctx, &sb); err != nil {
			return "", err
		}
	}
	return sb.String(), nil
}

// fairnessThroughput drains jobs spread over priorities or tenants, each
// run next to a run of the baseline (every job at priority 0, no tenant),
// so that the machine's load changes the ratios as little as it can.
// Tenants' jobs are laid out in runs of 1,000 (a scraper inserts in
// batches) or one by one in turn (the worst case: every claim reads rows
// scattered over the table).
func (b *bench) fairnessThroughput(ctx context.Context, sb *strings.Builder) error {
	type spread struct {
		name            string
		tenants, levels int
		run             int // jobs in a row of one tenant or level
		env             []string
		target          float64
	}
	spreads := []spread{
		{"one tenant, one priority (baseline)", 0, 0, 1, nil, 0},
		{"10 priorities in runs of 1,000, weighted claims (default)", 0, 10, 1000, nil, 0.9},
		{"10 priorities one by one in turn, weighted claims (default)", 0, 10, 1, nil, 0},
		{"100 tenants in runs of 1,000, TENANT_FAIR=true", 100, 0, 1000, []string{"TENANT_FAIR=true"}, 0.75},
		{"100 tenants one by one in turn, TENANT_FAIR=true", 100, 0, 1, []string{"TENANT_FAIR=true"}, 0},
	}
	vals := make([][]float64, len(spreads))
	for r := range b.o.runs {
		// Each round in another order: the first run of a round follows
		// the last one's clean-up.
		for k := range spreads {
			i := (k + r) % len(spreads)
			s := spreads[i]
			b.logf("relay: %s", s.name)
			v, _, err := b.relaySpread(ctx, s.tenants, s.levels, s.run, s.env...)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			vals[i] = append(vals[i], v)
		}
	}
	sb.WriteString("\n| priorities and tenants: relay --once, batch 100, 1 replica, 2 workers | jobs/s | ratio | target |\n| --- | ---: | ---: | --- |\n")
	base := median(vals[0])
	for i, s := range spreads {
		v := median(vals[i])
		target := ""
		if s.target > 0 {
			target = check(v >= s.target*base, fmt.Sprintf("≥ %.2f × baseline", s.target))
		}
		fmt.Fprintf(sb, "| %s | %s | %.2f | %s |\n", s.name, thousands(v), v/base, target)
	}
	return nil
}

// overtaking measures how long jobs wait behind a backlog, with and
// without the features.
func (b *bench) overtaking(ctx context.Context, sb *strings.Builder) error {
	const backlog = 50_000
	fmt.Fprintf(sb, "\n| behind a backlog of %s jobs (CONCURRENCY 8, 1 ms handler): INSERT commit → handler start | p50 | max | backlog reviewed first |\n| --- | ---: | ---: | ---: |\n",
		thousands(backlog))
	for _, o := range []struct {
		name, tenant string
		env          []string
		probes, prio int
		probeTenant  string
	}{
		{"10 jobs, no priority, default settings (without the feature)", "", nil, 10, 0, ""},
		{"10 jobs at priority 10, default MAX_STREAM_LAG (100000)", "", nil, 10, 10, ""},
		{"10 jobs at priority 10, MAX_STREAM_LAG=1000", "", []string{"MAX_STREAM_LAG=1000"}, 10, 10, ""},
		{"tenant B's 100 jobs behind tenant A's, default settings (without the feature)", "A", nil, 100, 0, "B"},
		{"tenant B's 100 jobs behind tenant A's, TENANT_FAIR=true", "A", []string{"TENANT_FAIR=true"}, 100, 0, "B"},
	} {
		var p50s, maxes, seen []float64
		for range b.o.runs {
			b.logf("overtaking: %s", o.name)
			r, err := b.overtakeRun(ctx, o.env, backlog, o.tenant, o.probes, o.prio, o.probeTenant)
			if err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
			p50s, maxes, seen = append(p50s, r.p50), append(maxes, r.max), append(seen, float64(r.backlogSeen))
		}
		fmt.Fprintf(sb, "| %s | %s | %s | %s |\n", o.name, seconds(median(p50s)), seconds(median(maxes)), thousands(median(seen)))
	}
	return nil
}

// seconds writes a wait in ms below a second, in s above.
func seconds(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'f', 2, 64) + " s"
}
