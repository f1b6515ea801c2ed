package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/sample"
)

const seedHelp = `Inserts N sample job postings (varied titles, companies, sites, locations and
descriptions), status pending_review, with COPY in chunks of 10,000: fast
enough for benchmarks. A running relay picks them up at once.`

type seedCommand struct {
	dc   dbConfig
	n    int
	seed int
}

func (c *seedCommand) parseFlags(a *app, args []string) error {
	s := newSettings("seed", a.env)
	s.bind(c.dc.bindings()...)
	s.bind(&binding{flag: "n", ptr: &c.n, def: 1000, meta: "N", help: "number of jobs to insert", check: intRange(1, 100_000_000)},
		&binding{flag: "seed", ptr: &c.seed, def: 0, meta: "N", help: "random seed; 0 picks one", check: intRange(0, 1<<31)})
	return a.parseNoArgs(s, args, "jobrelay seed -n N [flags]", seedHelp)
}

func (c *seedCommand) run(ctx context.Context, a *app) error {
	dc, n, seed := c.dc, c.n, c.seed
	pool, err := db.Open(ctx, dc.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if seed == 0 {
		seed = int(time.Now().UnixNano() & 0x7fffffff)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))

	var bar *progressbar.ProgressBar
	if f, ok := a.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) && dc.LogFormat != "json" { // with json, every stderr line is JSON
		bar = progressbar.NewOptions(n, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("seeding"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("jobs"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	const chunk = 10_000
	start := time.Now()
	done := 0
	for done < n {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("seed: interrupted after %d jobs", done)
		}
		k := min(chunk, n-done)
		inserted, err := db.InsertJobs(ctx, pool, sample.Jobs(rng, k))
		if err != nil {
			return fmt.Errorf("seed: after %d jobs: %w", done, err)
		}
		done += int(inserted)
		if bar != nil {
			_ = bar.Add(int(inserted))
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	elapsed := time.Since(start)
	fmt.Fprintf(a.stdout, "inserted %d jobs (pending_review) in %s: %.0f jobs/s\n",
		done, elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds())
	return nil
}
