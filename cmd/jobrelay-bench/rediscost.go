package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Redis's cost per job published, in instructions: callgrind counts them
// inside EVALSHA on a redis-server of the run's own, so the figure is the
// same whatever else the machine does, unlike a time.
const (
	costBatches = 200 // batches of costBatch jobs counted
	costBatch   = 100
)

// xaddOnlyScript adds the entries the publish script adds, with nothing
// else: no dedup records. The floor the publish script is measured against.
var xaddOnlyScript = redis.NewScript(`
local stream, enqueued = KEYS[1], ARGV[1]
local ids = {}
for j = 0, (#ARGV - 1) / 6 - 1 do
  local o = 2 + j * 6
  ids[j + 1] = redis.call('XADD', stream, '*', 'job_id', ARGV[o], 'site', ARGV[o + 1], 'title', ARGV[o + 2],
    'company', ARGV[o + 3], 'job_url', ARGV[o + 4], 'attempt', ARGV[o + 5], 'enqueued_at', enqueued)
end
return ids
`)

// redisCost is the part "rediscost": the instructions per job of the
// relay's publish (the script, with its dedup records, and the previous
// batch's records deleted as the relay does) and of the same XADDs alone.
func (b *bench) redisCost(ctx context.Context) (string, error) {
	if !b.runs("rediscost") {
		return "", nil
	}
	publish := func(rdb *redis.Client) func(context.Context) error {
		var forget stream.DedupRecords
		seq := 0
		return func(ctx context.Context) error {
			res, err := stream.Publish(ctx, rdb, &stream.PublishParams{Stream: "cost", DedupTTL: 10 * time.Minute,
				EnqueuedAt: time.Now().UTC().Format(time.RFC3339Nano), Jobs: costJobs(&seq, costBatch), Forget: forget})
			forget = res.Records
			return err
		}
	}
	xadds := func(rdb *redis.Client) func(context.Context) error {
		seq := 0
		return func(ctx context.Context) error {
			args := []any{time.Now().UTC().Format(time.RFC3339Nano)}
			for _, j := range costJobs(&seq, costBatch) {
				args = append(args, j.ID, j.Site.String, j.Title.String, j.Company.String, j.JobURL.String, "1")
			}
			return xaddOnlyScript.Run(ctx, rdb, []string{"cost"}, args...).Err()
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| Redis instructions per job published (callgrind inside EVALSHA, %s jobs in batches of %d) | instructions | ratio |\n| --- | ---: | ---: |\n",
		thousands(costBatches*costBatch), costBatch)
	floor := 0.0
	for _, c := range []struct {
		name string
		f    func(*redis.Client) func(context.Context) error
	}{
		{"the XADDs alone, in a script (no dedup records)", xadds},
		{"jobrelay's publish script: XADDs, dedup records, one expiry per batch, last batch's records deleted", publish},
	} {
		b.logf("redis cost: %s", c.name)
		n, err := callgrindPerJob(ctx, c.f)
		if err != nil {
			return "", fmt.Errorf("redis cost: %w", err)
		}
		if floor == 0 {
			floor = n
		}
		fmt.Fprintf(&sb, "| %s | %s | %.2f |\n", c.name, thousands(n), n/floor)
	}
	return sb.String(), nil
}

// callgrindPerJob starts a redis-server under callgrind, counting only
// inside EVALSHA, makes one warm-up call of newCall's batches (it loads the
// script, through EVAL), then costBatches calls, and returns the
// instructions per job.
func callgrindPerJob(ctx context.Context, newCall func(*redis.Client) func(context.Context) error) (float64, error) {
	out, err := os.MkdirTemp("", "jobrelay-bench-callgrind-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(out)
	file := filepath.Join(out, "callgrind.out")
	rs, err := startRedisUnder(ctx, "valgrind", "--tool=callgrind", "--toggle-collect=evalShaCommand", "--callgrind-out-file="+file)
	if err != nil {
		return 0, fmt.Errorf("valgrind (Debian's valgrind package): %w", err)
	}
	call := newCall(rs.rdb)
	for i := range costBatches + 1 {
		if err := call(ctx); err != nil {
			rs.stop()
			return 0, fmt.Errorf("batch %d: %w", i, err)
		}
	}
	rs.stop() // a clean shutdown: callgrind writes its counts
	raw, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("callgrind wrote no counts: %w", err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "summary: "); ok {
			total, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				return 0, fmt.Errorf("callgrind summary %q: %w", v, err)
			}
			return total / (costBatches * costBatch), nil
		}
	}
	return 0, errors.New("callgrind's output has no summary line")
}

// costJobs makes n sample jobs with IDs numbered from *seq on, as a
// relay's claims return them.
func costJobs(seq *int, n int) []db.Job {
	jobs := make([]db.Job, n)
	for i := range jobs {
		*seq++
		jobs[i] = db.Job{
			ID:      fmt.Sprintf("0b3e4a4e-9a57-4a0c-8f4e-%012x", *seq),
			Site:    pgtype.Text{String: "linkedin", Valid: true},
			Title:   pgtype.Text{String: "Senior Site Reliability Engineer", Valid: true},
			Company: pgtype.Text{String: "Hooli Analytics", Valid: true},
			JobURL:  pgtype.Text{String: "https://jobs.example.com/" + strconv.Itoa(*seq), Valid: true},
		}
	}
	return jobs
}
