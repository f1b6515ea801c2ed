package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/relay"
)

// tableRun is what one table size measured: the median time of each hot
// query, and their plans.
type tableRun struct {
	reviewed int
	build    time.Duration
	times    map[string]time.Duration
	plans    []db.Plan
}

// Queries of the table scenario, in the report's order.
var tableQueries = []string{
	"relay claim (100 jobs)",
	"reaper page (100 jobs)",
	"metrics backlog",
	"jobrelay status (PostgreSQL part)",
	"archiver batch (1,000 jobs)",
	"exact count by status (status before)",
}

const (
	tablePending  = 5000 // jobs pending review next to the reviewed ones
	tableInReview = 1000 // jobs in_review, published ten minutes ago
	tableSamples  = 21   // runs of each query; the median is reported
)

// tableSize builds a schema whose jobs table holds reviewed finished jobs,
// tablePending pending ones and tableInReview in_review ones, vacuumed and
// analyzed as autovacuum would leave it, then times the queries whose cost
// must not grow with the reviewed jobs.
func (b *bench) tableSize(ctx context.Context, reviewed int) (*tableRun, error) {
	p, err := b.newPipeline(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer p.drop()
	start := time.Now()
	const chunk = 1_000_000
	for done := 0; done < reviewed; done += chunk {
		if err := db.GenerateReviewedJobs(ctx, p.pool, done+1, min(chunk, reviewed-done)); err != nil {
			return nil, err
		}
	}
	if err := db.GenerateJobs(ctx, p.pool, tablePending+tableInReview); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	// The in_review jobs go through the relay's own statements.
	jobs, err := db.BeginClaim(ctx, conn, tableInReview, nil)
	if err != nil {
		return nil, err
	}
	ids, streamIDs := make([]string, len(jobs)), make([]string, len(jobs))
	for i := range jobs {
		ids[i], streamIDs[i] = jobs[i].ID, fmt.Sprintf("1-%d", i)
	}
	if err := db.CommitInReview(ctx, conn, &db.InReviewParams{IDs: ids, StreamIDs: streamIDs,
		EnqueuedAt: time.Now().Add(-10 * time.Minute), Stream: "job_review"}); err != nil {
		return nil, err
	}
	for _, sql := range []string{"VACUUM ANALYZE jobs", "CHECKPOINT"} {
		if _, err := p.pool.Exec(ctx, sql); err != nil {
			return nil, err
		}
	}
	run := &tableRun{reviewed: reviewed, build: time.Since(start), times: map[string]time.Duration{}}
	if run.plans, err = db.ExplainHotQueries(ctx, p.pool); err != nil {
		return nil, err
	}

	queries := map[string]func() error{
		tableQueries[0]: func() error {
			if _, err := db.BeginClaim(ctx, conn, 100, nil); err != nil {
				return err
			}
			return db.Rollback(ctx, conn)
		},
		tableQueries[1]: func() error {
			_, err := db.PublishedBefore(ctx, p.pool, &db.PublishedBeforeParams{Before: time.Now(), Stream: "job_review", Limit: 100})
			return err
		},
		tableQueries[2]: func() error {
			_, err := db.ReadBacklog(ctx, p.pool)
			return err
		},
		tableQueries[3]: func() error {
			// What status reads from PostgreSQL: counts, backlog and
			// in_review jobs by stream (inspect.Take without Redis).
			if _, err := db.ReadJobCounts(ctx, p.pool); err != nil {
				return err
			}
			if _, err := db.ReadBacklog(ctx, p.pool); err != nil {
				return err
			}
			_, err := db.CountInReviewByStream(ctx, p.pool)
			return err
		},
		tableQueries[4]: func() error {
			// Archived and rolled back, so every run finds the same rows.
			tx, err := p.pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(ctx) }()
			n, err := db.ArchiveReviewedBatch(ctx, tx, time.Now().Add(-30*24*time.Hour), relay.ArchiveBatchSizeDefault)
			if err == nil && n != relay.ArchiveBatchSizeDefault {
				err = fmt.Errorf("archived %d jobs, want %d", n, relay.ArchiveBatchSizeDefault)
			}
			return err
		},
		tableQueries[5]: func() error {
			_, err := db.CountByStatus(ctx, p.pool)
			return err
		},
	}
	for _, name := range tableQueries {
		samples := tableSamples
		if name == tableQueries[5] {
			samples = 3 // seconds each on the largest table
		}
		var ds []float64
		for range samples {
			t0 := time.Now()
			if err := queries[name](); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			ds = append(ds, float64(time.Since(t0)))
		}
		run.times[name] = time.Duration(median(ds))
	}
	b.logf("table of %s reviewed jobs (built in %s): %v", thousands(float64(reviewed)), run.build.Round(time.Second), run.times)
	return run, nil
}

// tableReport is the table scenario's section of the report.
func tableReport(runs []*tableRun) string {
	if len(runs) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| a table of millions: %s pending, %s in_review, and | ", thousands(tablePending), thousands(tableInReview))
	for _, r := range runs {
		fmt.Fprintf(&sb, "%s reviewed | ", thousands(float64(r.reviewed)))
	}
	sb.WriteString("target |\n| --- |")
	sb.WriteString(strings.Repeat(" ---: |", len(runs)))
	sb.WriteString(" --- |\n")
	for _, q := range tableQueries {
		fmt.Fprintf(&sb, "| %s | ", q)
		var ds []time.Duration
		for _, r := range runs {
			fmt.Fprintf(&sb, "%s | ", ms(r.times[q]))
			ds = append(ds, r.times[q])
		}
		target := ""
		if q != tableQueries[5] && len(ds) > 1 {
			// Flat in the number of reviewed jobs: within 2 ms or 2× of the
			// smallest table's time.
			flat := ds[len(ds)-1] <= max(2*ds[0], ds[0]+2*time.Millisecond)
			target = check(flat, "flat in the reviewed jobs")
		}
		fmt.Fprintf(&sb, "%s |\n", target)
	}
	last := runs[len(runs)-1]
	sb.WriteString("\nPlans on the largest table (EXPLAIN): ")
	var parts []string
	for _, p := range last.plans {
		scan := ""
		if p.SeqScan {
			scan = ", **and a sequential scan**"
		}
		parts = append(parts, fmt.Sprintf("%s reads %s%s", p.Query, strings.Join(quoted(p.Indexes), " and "), scan))
	}
	sb.WriteString(strings.Join(parts, "; ") + ".\n")
	return sb.String()
}

func ms(d time.Duration) string {
	if d >= 100*time.Millisecond {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func quoted(names []string) []string {
	out := slices.Clone(names)
	for i, n := range out {
		out[i] = "`" + n + "`"
	}
	if len(out) == 0 {
		return []string{"no index"}
	}
	return out
}
