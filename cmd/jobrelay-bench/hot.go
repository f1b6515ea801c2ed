package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// hotVariant is a schema tried for heap-only tuple (HOT) updates: DDL run
// after jobrelay's migrations, before the jobs are inserted.
type hotVariant struct {
	name  string
	ddl   string
	claim claimFunc // the relay's claim on this schema; nil for db.BeginClaim
}

// noStatusIndexes replaces every index but the primary key, since on
// PostgreSQL 15 an update of a column that any index mentions, predicates
// included, cannot be HOT, and jobrelay's partial indexes all name status
// (and the archiver's name updated_at, which the consumer's update sets
// too). The replacements name neither: the relay's pending rows are found
// by a column that triggers keep equal to created_at while the row is
// pending_review and NULL otherwise (the WHEN clauses call them only when
// it changes), the reaper's and the tenant cap's in-flight rows by
// enqueued_at. The consumer's update (status, last_error, updated_at) then
// touches no indexed column and can be HOT where the page has room. The
// archiver would have no index left to find reviewed rows by.
const noStatusIndexes = `
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT indexrelid::regclass AS idx FROM pg_index
        WHERE indrelid = 'jobs'::regclass AND NOT indisprimary
    LOOP
        EXECUTE 'DROP INDEX ' || r.idx;
    END LOOP;
END $$;
ALTER TABLE jobs ADD COLUMN pending_since timestamptz;
CREATE FUNCTION jobs_pending_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.pending_since := CASE WHEN NEW.status = 'pending_review'
        THEN coalesce(NEW.pending_since, NEW.created_at) END;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_pending_since_insert BEFORE INSERT ON jobs
    FOR EACH ROW WHEN (NEW.status = 'pending_review')
    EXECUTE FUNCTION jobs_pending_since();
CREATE TRIGGER jobs_pending_since_update BEFORE UPDATE OF status ON jobs
    FOR EACH ROW WHEN ((NEW.status = 'pending_review') <> (OLD.pending_since IS NOT NULL))
    EXECUTE FUNCTION jobs_pending_since();
CREATE INDEX jobs_pending_since_idx ON jobs (pending_since) WHERE pending_since IS NOT NULL;
CREATE INDEX jobs_pending_since_priority_idx ON jobs (priority DESC, pending_since)
    WHERE pending_since IS NOT NULL;
CREATE INDEX jobs_pending_since_tenant_priority_idx ON jobs ((coalesce(tenant, '')), priority DESC, pending_since)
    WHERE pending_since IS NOT NULL;
CREATE INDEX jobs_pending_since_tenant_idx ON jobs ((coalesce(tenant, '')), pending_since)
    WHERE pending_since IS NOT NULL;
CREATE INDEX jobs_enqueued_at_idx ON jobs (enqueued_at) WHERE enqueued_at IS NOT NULL;
`

// hotVariants are the schemas the HOT experiment compares.
var hotVariants = []hotVariant{
	{name: "jobrelay's schema (status in both partial indexes' predicates)"},
	{name: "jobrelay's schema, fillfactor 70", ddl: "ALTER TABLE jobs SET (fillfactor = 70);"},
	{name: "no index mentions status, fillfactor 100", ddl: noStatusIndexes, claim: claimPendingSince},
	{name: "no index mentions status, fillfactor 70", ddl: noStatusIndexes + "ALTER TABLE jobs SET (fillfactor = 70);", claim: claimPendingSince},
	{name: "no index mentions status, fillfactor 50", ddl: noStatusIndexes + "ALTER TABLE jobs SET (fillfactor = 50);", claim: claimPendingSince},
}

// hotResult is one run of the experiment.
type hotResult struct {
	rate    float64 // jobs/s of the consumers' limit loop
	hotFrac float64 // share of its updates that were HOT
}

// hotLimit runs the consumers' limit loop (2 connections) on a schema
// variant: jobs generated pending, made in_review by one UPDATE as a relay
// would (non-HOT in every variant), vacuumed, their entries added to the
// stream; then timed, the loop's XREADGROUP, UPDATE to reviewed, XACK. It
// reports jobs/s and the share of the loop's updates that were HOT.
func (b *bench) hotLimit(ctx context.Context, v hotVariant, conns int) (hotResult, error) {
	var res hotResult
	p, err := b.hotPipeline(ctx, v, `UPDATE jobs SET status = 'in_review', enqueued_at = now(), attempts = 1, updated_at = now()`)
	if err != nil {
		return res, err
	}
	defer p.drop()
	rows, err := p.pool.Query(ctx, `SELECT id::text FROM jobs ORDER BY created_at`)
	if err != nil {
		return res, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return res, err
	}
	if err := b.rdb.XGroupCreateMkStream(ctx, p.stream, consumer.GroupDefault, "0").Err(); err != nil {
		return res, err
	}
	for done := 0; done < len(ids); done += 1000 {
		_, err := b.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, id := range ids[done:min(done+1000, len(ids))] {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: p.stream, Values: []any{stream.FieldJobID, id, stream.FieldAttempt, "1"}})
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	// The relay-like UPDATE's statistics reach the view once its backend
	// flushes them: wait for them, so that they are not counted as the
	// loop's.
	var before, beforeHot int64
	if err := waitFor(ctx, 10*time.Second, func() bool {
		before, beforeHot, err = p.updates(ctx)
		return err == nil && before >= int64(b.o.jobs)
	}); err != nil {
		return res, fmt.Errorf("statistics of the updates: %w", err)
	}

	pgConns, closeAll, err := p.connect(ctx, conns)
	if err != nil {
		return res, err
	}
	defer closeAll()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, conn := range pgConns {
		wg.Go(func() { errs <- b.consumerLoop(ctx, conn, p.stream, "hot-"+strconv.Itoa(i)) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, conn := range pgConns {
		_ = conn.Close(ctx) // a backend flushes its statistics as it exits
	}
	close(errs)
	for err := range errs {
		if err != nil {
			return res, err
		}
	}
	if err := p.check(ctx, db.StatusReviewed, b.o.jobs); err != nil {
		return res, err
	}
	res.rate = float64(b.o.jobs) / elapsed.Seconds()
	var after, afterHot int64
	if err := waitFor(ctx, 10*time.Second, func() bool {
		after, afterHot, err = p.updates(ctx)
		return err == nil && after-before >= int64(b.o.jobs)
	}); err != nil {
		return res, fmt.Errorf("statistics of the updates: %w", err)
	}
	res.hotFrac = float64(afterHot-beforeHot) / float64(after-before)
	return res, nil
}

// hotPipeline is a pipeline on the variant's schema with the run's jobs,
// pending, then changed by the statements in then (if any), vacuumed and
// checkpointed.
func (b *bench) hotPipeline(ctx context.Context, v hotVariant, then ...string) (_ *pipeline, err error) {
	p, err := b.newPipeline(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.drop()
		}
	}()
	if v.ddl != "" {
		if _, err := p.pool.Exec(ctx, v.ddl); err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
	}
	for done := 0; done < b.o.jobs; done += 200_000 {
		if err := db.GenerateJobs(ctx, p.pool, min(200_000, b.o.jobs-done)); err != nil {
			return nil, err
		}
	}
	for _, q := range append(then, "VACUUM ANALYZE jobs", "CHECKPOINT") {
		if _, err := p.pool.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// hotRelayLimit runs the relay's side on a schema variant: the PostgreSQL
// limit's loop (claim, update to in_review, commit; no Redis) with the
// variant's claim, batch 100, on conns connections.
func (b *bench) hotRelayLimit(ctx context.Context, v hotVariant, conns int) (float64, error) {
	p, err := b.hotPipeline(ctx, v)
	if err != nil {
		return 0, err
	}
	defer p.drop()
	claim := v.claim
	if claim == nil {
		claim = db.BeginClaim
	}
	rate, _, err := b.claimLoop(ctx, p, 100, conns, claim)
	return rate, err
}

// claimPendingSinceSQL is claimSQL on the noStatusIndexes schema.
const claimPendingSinceSQL = `
SELECT id::text, site, job_url, title, company, attempts, priority, tenant
FROM jobs
WHERE pending_since IS NOT NULL
ORDER BY priority DESC, pending_since
LIMIT $1
FOR UPDATE SKIP LOCKED`

// claimPendingSince is db.BeginClaim on the noStatusIndexes schema: BEGIN
// and the claim in one round trip. The columns are db.Job's, in its order.
func claimPendingSince(ctx context.Context, conn *pgx.Conn, limit int, dst []db.Job) ([]db.Job, error) {
	jobs := dst[:0]
	var batch pgx.Batch
	batch.Queue("BEGIN")
	batch.Queue(claimPendingSinceSQL, limit).Query(func(rows pgx.Rows) error {
		var err error
		jobs, err = pgx.AppendRows(jobs, rows, pgx.RowToStructByPos[db.Job])
		return err
	})
	if err := conn.SendBatch(ctx, &batch).Close(); err != nil {
		return nil, fmt.Errorf("claim pending jobs: %w", err)
	}
	return jobs, nil
}

// updates reads the jobs table's updates so far, and the HOT ones.
func (p *pipeline) updates(ctx context.Context) (n, hot int64, err error) {
	err = p.pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
WHERE relid = 'jobs'::regclass`).Scan(&n, &hot)
	return n, hot, err
}

// hotRun is a variant's measurement and the HOT shares of its runs.
type hotRun struct {
	v     hotVariant
	m     *measurement // the consumers' limit loop
	relay *measurement // the relay's limit loop
	fracs []float64
}

// addHot adds the HOT experiment's measurements to the rounds (part "hot").
func (b *bench) addHot(ctx context.Context, add func(part, name string, f func() (float64, int64, error)) *measurement) []*hotRun {
	var runs []*hotRun
	for _, v := range hotVariants {
		r := &hotRun{v: v}
		r.m = add("hot", "HOT: "+v.name, noRSS(func() (float64, error) {
			res, err := b.hotLimit(ctx, v, 2)
			r.fracs = append(r.fracs, res.hotFrac)
			return res.rate, err
		}))
		r.relay = add("hot", "HOT, relay's side: "+v.name, noRSS(func() (float64, error) {
			return b.hotRelayLimit(ctx, v, 2)
		}))
		runs = append(runs, r)
	}
	return runs
}

// hotTable is the HOT experiment's table, if it ran.
func hotTable(runs []*hotRun) string {
	if len(runs) == 0 || len(runs[0].m.vals) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| HOT experiment, batch %d, 2 connections | consumers' limit loop, jobs/s | ratio | HOT share of its updates | relay's limit loop (claim, update, commit), jobs/s | ratio |\n| --- | ---: | ---: | ---: | ---: | ---: |\n", consumerLimitBatch)
	base, relayBase := runs[0].m.median(), runs[0].relay.median()
	for _, r := range runs {
		fmt.Fprintf(&sb, "| %s | %s | %.2f | %.0f%% | %s | %.2f |\n", r.v.name, thousands(r.m.median()), r.m.median()/base, 100*median(r.fracs),
			thousands(r.relay.median()), r.relay.median()/relayBase)
	}
	return sb.String()
}
