package relay

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// pickJob returns the ID of the n-th oldest job.
func (b *testBundle) pickJob(t *testing.T, n int) string {
	t.Helper()
	var id string
	require.NoError(t, b.schema.Pool.QueryRow(testenv.Context(t),
		`SELECT id::text FROM jobs ORDER BY created_at, id OFFSET $1 LIMIT 1`, n).Scan(&id))
	return id
}

func (b *testBundle) row(t *testing.T, id string) jobRow {
	t.Helper()
	row, ok := b.rows(t)[id]
	require.True(t, ok, "job %s", id)
	return row
}

// embargo adds the application's trigger that refuses to let job id go
// in_review; it counts its refusals in the sequence embargo_hits.
func (b *testBundle) embargo(t *testing.T, id string) {
	t.Helper()
	b.sql(t, `CREATE SEQUENCE embargo_hits`)
	b.sql(t, `
CREATE FUNCTION embargo() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = '`+id+`' AND NEW.status = 'in_review' THEN
        PERFORM nextval('embargo_hits');
        RAISE EXCEPTION 'job % is under embargo', NEW.id;
    END IF;
    RETURN NEW;
END $$`)
	b.sql(t, `CREATE TRIGGER embargo BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION embargo()`)
}

// hits reads a sequence that a trigger counts its refusals in (sequences
// are not rolled back).
func (b *testBundle) hits(t *testing.T, seq string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.schema.Pool.QueryRow(testenv.Context(t), `SELECT last_value FROM `+seq).Scan(&n))
	return n
}

func TestARowATriggerRefusesIsIsolated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(t, 250)
	bad := b.pickJob(t, 137)
	b.embargo(t, bad)

	r := b.newRelay(t, b.cfg)
	startRelay(t, r)
	require.Eventually(t, func() bool { return b.backlog(t).InReview == 249 }, 30*time.Second, 5*time.Millisecond)
	row := b.row(t, bad)
	require.Equal(t, db.StatusFailed, row.Status)
	require.NotNil(t, row.LastError)
	require.Equal(t, "relay: cannot mark job in_review: ERROR: job "+bad+" is under embargo (SQLSTATE P0001)", *row.LastError)
	require.Zero(t, b.backlog(t).Pending)
	require.EqualValues(t, 1, counterValue(t, r.m.JobsUnpublishable))
	require.Len(t, b.logger.Matching("relay: job cannot be published; marked failed"), 1)

	// The relay goes on: later jobs flow, and the embargoed job is not
	// tried again.
	hits := b.hits(t, "embargo_hits")
	b.seed(t, 120)
	require.Eventually(t, func() bool { return b.backlog(t).InReview == 369 }, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, hits, b.hits(t, "embargo_hits"))
	require.Zero(t, counterValue(t, r.m.JobsSkipped))
}

func TestARowACheckConstraintRefusesIsIsolated(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 120)
	var bad string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `INSERT INTO jobs (title, company) VALUES ('Blocked', 'Blocked Inc') RETURNING id::text`).Scan(&bad))
	b.seed(t, 130)
	b.sql(t, `ALTER TABLE jobs ADD CONSTRAINT no_blocked_in_review CHECK (status <> 'in_review' OR company IS DISTINCT FROM 'Blocked Inc')`)

	res, err := b.newRelay(t, b.cfg).DrainReport(ctx)
	require.NoError(t, err, "relay --once exits 0")
	require.Equal(t, 251, res.Jobs)
	require.Equal(t, []string{bad}, res.Failed)
	require.Empty(t, res.LeftAlone)
	row := b.row(t, bad)
	require.Equal(t, db.StatusFailed, row.Status)
	require.Equal(t, `relay: cannot mark job in_review: ERROR: new row for relation "jobs" violates check constraint "no_blocked_in_review" (SQLSTATE 23514)`, *row.LastError)
	require.EqualValues(t, 250, b.backlog(t).InReview)
}

func TestARowADeferredConstraintRefusesIsIsolated(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 60)
	bad := b.pickJob(t, 7)
	// Checked at COMMIT, after every statement of the cycle succeeded.
	b.sql(t, `
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = '`+bad+`' AND NEW.status = 'in_review' THEN
        RAISE EXCEPTION 'audit refuses job %', NEW.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$`)
	b.sql(t, `CREATE CONSTRAINT TRIGGER audit AFTER UPDATE ON jobs DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION audit()`)

	res, err := b.newRelay(t, b.cfg).DrainReport(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{bad}, res.Failed)
	require.Equal(t, "relay: cannot mark job in_review: ERROR: audit refuses job "+bad+" (SQLSTATE 23000)", *b.row(t, bad).LastError)
	require.EqualValues(t, 59, b.backlog(t).InReview)
}

func TestARowThatCannotBeUpdatedAtAllIsLeftAlone(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 250)
	frozen := b.pickJob(t, 42)
	b.sql(t, `CREATE SEQUENCE frozen_hits`)
	b.sql(t, `
CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id = '`+frozen+`' THEN
        PERFORM nextval('frozen_hits');
        RAISE EXCEPTION 'job % is frozen', OLD.id;
    END IF;
    RETURN NEW;
END $$`)
	b.sql(t, `CREATE TRIGGER frozen BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION frozen()`)

	// relay --once: finishes, and says which job it could not relay.
	r := b.newRelay(t, b.cfg)
	res, err := r.DrainReport(ctx)
	require.NoError(t, err)
	require.Equal(t, 250, res.Jobs)
	require.Empty(t, res.Failed)
	require.Equal(t, []string{frozen}, res.LeftAlone)
	require.EqualValues(t, 249, b.backlog(t).InReview)
	row := b.row(t, frozen)
	require.Equal(t, db.StatusPendingReview, row.Status, "nothing can change it")
	require.Zero(t, row.Attempts)
	left := b.logger.Matching("relay: job can be neither relayed nor marked failed")
	require.Len(t, left, 1)
	require.Equal(t, "ERROR", left[0].Level.String())
	require.Equal(t, frozen, left[0].Attrs["job_id"])
	require.Contains(t, left[0].Attrs["err"], "job "+frozen+" is frozen (SQLSTATE P0001)")
	require.EqualValues(t, 1, counterValue(t, r.m.JobsSkipped))

	// Bounded: a cycle's bisection and one attempt to mark it failed.
	hits := b.hits(t, "frozen_hits")
	require.LessOrEqual(t, hits, int64(16))

	// The same relay runs on: it does not claim the row again, and jobs
	// after it flow.
	startRelay(t, r)
	b.seed(t, 300)
	require.Eventually(t, func() bool { return b.backlog(t).InReview == 549 }, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, hits, b.hits(t, "frozen_hits"), "no retry of the frozen row")
	require.Len(t, b.logger.Matching("relay: job can be neither relayed nor marked failed"), 1)
	require.EqualValues(t, 1, b.backlog(t).Pending)
}

func TestAStrayEntryOfAFailedJobIsDeleted(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.seed(t, 100)
	bad := b.pickJob(t, 50)
	b.embargo(t, bad)
	// The failed cycle publishes the job before its UPDATE fails; a
	// consumer reads that entry before the relay can delete it.
	var early redis.XMessage
	r := b.newRelay(t, b.cfg)
	r.hooks.afterPublish = func(ctx context.Context, _ *pgx.Conn) {
		if early.ID != "" {
			return
		}
		for _, e := range b.entries(t) {
			if e.Values["job_id"] == bad {
				early = e
			}
		}
	}
	_, err := r.DrainReport(ctx)
	require.NoError(t, err)
	require.Equal(t, db.StatusFailed, b.row(t, bad).Status)
	require.NotEmpty(t, early.ID, "the failed cycle published the job")

	// The relay deleted the stray entry.
	entries := b.entries(t)
	require.Len(t, entries, 99)
	for _, e := range entries {
		require.NotEqual(t, bad, e.Values["job_id"])
	}

	// Had a consumer read it first (here: the same entry again), the
	// handler's success wins, as every success does: the job ends
	// reviewed, its last_error cleared, and the entry is acknowledged.
	require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: early.Values}).Err())
	// The group exists already, as it would for a consumer that read the
	// entry early (a consumer creating the group checks older entries'
	// jobs first, and would skip it).
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, GroupDefault, "0").Err())
	var mu sync.Mutex
	handled := map[string]bool{}
	c, err := consumer.New(b.schema.Pool, b.rdb, consumer.Config{
		Stream: b.stream, Block: 50 * time.Millisecond, ReclaimIdle: time.Minute, Logger: b.cfg.Logger,
		Handler: consumer.HandlerFunc(func(_ context.Context, j consumer.Job) error {
			mu.Lock()
			defer mu.Unlock()
			handled[j.ID] = true
			return nil
		}),
	})
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		p, err := b.rdb.XPending(ctx, b.stream, GroupDefault).Result()
		return err == nil && p.Count == 0 && len(handled) == 100
	}, 30*time.Second, 5*time.Millisecond)
	gs, err := b.rdb.XInfoGroups(ctx, b.stream).Result()
	require.NoError(t, err)
	require.Zero(t, gs[0].Lag)
	counts, err := db.CountByStatus(ctx, b.schema.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 100, counts[db.StatusReviewed])
	row := b.row(t, bad)
	require.Equal(t, db.StatusReviewed, row.Status, "a handler's success is never lost")
	require.Nil(t, row.LastError)
}

func TestARowThatCannotBeReadIsIsolated(t *testing.T) {
	t.Parallel()
	// With batches of 10, the row is in the batch claimed ahead while the
	// first is published: that claim fails and is undone, the first batch
	// commits alone, and the next cycle isolates the row.
	for _, batch := range []int{100, 10} {
		t.Run("batch "+strconv.Itoa(batch), func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			// A database in EUC-JP can hold characters that have no
			// equivalent in UTF-8: reading such a row fails for a client
			// that asks for UTF-8.
			pool := testenv.NewDatabase(t, "EUC_JP", "client_encoding=UTF8")

			_, err := pool.Exec(ctx, `INSERT INTO jobs (title, company, created_at)
SELECT 'Job ' || g, 'Good', now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 40) g`)
			require.NoError(t, err)
			bad := insertUnreadableJob(t, pool, 0, time.Hour-17500*time.Millisecond)

			rdb := testenv.NewRedis(t)
			s := testenv.Stream(t, rdb)
			r, err := New(pool, rdb, Config{Stream: s, MaxStreamLag: -1, MaxMemoryRatio: -1, BatchSize: batch, Workers: 1})
			require.NoError(t, err)
			res, err := r.DrainReport(ctx)
			require.NoError(t, err)
			require.Equal(t, 41, res.Jobs)
			require.Equal(t, []string{bad}, res.Failed)
			var status, lastError string
			require.NoError(t, pool.QueryRow(ctx, `SELECT status, last_error FROM jobs WHERE id = $1`, bad).Scan(&status, &lastError))
			require.Equal(t, db.StatusFailed, status)
			require.Equal(t, `relay: cannot read job: ERROR: character with byte sequence 0xf5 0xa1 in encoding "EUC_JP" has no equivalent in encoding "UTF8" (SQLSTATE 22P05)`, lastError)
			n, err := rdb.XLen(ctx, s).Result()
			require.NoError(t, err)
			require.EqualValues(t, 40, n)
			var inReview int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'in_review' AND attempts = 1`).Scan(&inReview))
			require.Equal(t, 40, inReview)
			require.EqualValues(t, 1, counterValue(t, r.m.Errors.WithLabelValues("claim")), "the claim that met the row")
		})
	}
}

// TestAnUnreadableRowOnlyAgingReachesIsIsolated: a row only the aging
// claim (oldest first, one claim in AgingEvery) reaches fails that claim,
// made ahead or with a COMMIT. The next cycle but one must isolate the
// row, claiming oldest first as the failed claim did, not claim afresh:
// its own claim, by priority, would pass the row by, and every aging claim
// after it would fail the same way, so no lower-priority job would move
// while higher ones keep coming.
func TestAnUnreadableRowOnlyAgingReachesIsIsolated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// killAhead fails the first claim ahead (its connection is
		// killed): the cycle after it claims none, which moves the
		// claims made with a COMMIT onto the aging ones.
		killAhead  bool
		firstLow   int // entries before the first lower-priority one
		claimFails int
	}{
		{name: "claimed ahead", firstLow: 9 * 10, claimFails: 1},
		{name: "claimed with a commit", killAhead: true, firstLow: 7 * 10, claimFails: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			pool := testenv.NewDatabase(t, "EUC_JP", "client_encoding=UTF8")
			insertUnreadableJob(t, pool, 0, 3*time.Hour)
			_, err := pool.Exec(ctx, `INSERT INTO jobs (title, company, priority, created_at)
SELECT 'Low ' || g, 'Low', 0, now() - interval '2 hours' + g * interval '1 second' FROM generate_series(1, 20) g;
INSERT INTO jobs (title, company, priority, created_at)
SELECT 'High ' || g, 'High', 5, now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 300) g`)
			require.NoError(t, err)

			rdb := testenv.NewRedis(t)
			s := testenv.Stream(t, rdb)
			r, err := New(pool, rdb, Config{Stream: s, MaxStreamLag: -1, MaxMemoryRatio: -1, BatchSize: 10, Workers: 1})
			require.NoError(t, err)
			// The claims made ahead, by number.
			var aheadAt []uint64
			r.hooks.beforeClaimAhead = func(ctx context.Context, conn *pgx.Conn) { // on the relay's goroutine
				aheadAt = append(aheadAt, r.order.claims.Load())
				if tc.killAhead && len(aheadAt) == 1 {
					if err := terminateBackend(ctx, pool, conn.PgConn().PID()); err != nil {
						t.Error(err)
					}
				}
			}
			res, err := r.DrainReport(ctx)
			if tc.killAhead {
				require.Error(t, err, "the drain stops at the killed claim")
				res, err = r.DrainReport(ctx)
			}
			require.NoError(t, err)
			require.Equal(t, 321, res.Jobs)
			require.Len(t, res.Failed, 1)
			require.Equal(t, !tc.killAhead, slices.Contains(aheadAt, AgingEvery), "the first aging claim is made ahead")
			msgs, err := rdb.XRange(ctx, s, "-", "+").Result()
			require.NoError(t, err)
			require.Len(t, msgs, 320)
			first := slices.IndexFunc(msgs, func(m redis.XMessage) bool { return m.Values["company"] == "Low" })
			require.Equal(t, tc.firstLow, first, "the first lower-priority entry")
			require.EqualValues(t, tc.claimFails, counterValue(t, r.m.Errors.WithLabelValues("claim")))
		})
	}
}

// TestAnUnreadableHighPriorityRowIsIsolatedAtOnce: a row that claims by
// priority meet first, behind many older jobs of lower priority, fails
// the claim. The isolating cycle claims in the failed claim's order, so
// it meets the row at once: claiming oldest first would relay ten old
// jobs per isolating cycle and fail every claim in between, until the row
// was among the oldest.
func TestAnUnreadableHighPriorityRowIsIsolatedAtOnce(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := testenv.NewDatabase(t, "EUC_JP", "client_encoding=UTF8")
	_, err := pool.Exec(ctx, `INSERT INTO jobs (title, company, priority, created_at)
SELECT 'Low ' || g, 'Low', 0, now() - interval '2 hours' + g * interval '1 second' FROM generate_series(1, 100) g;
INSERT INTO jobs (title, company, priority, created_at)
SELECT 'High ' || g, 'High', 5, now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 15) g`)
	require.NoError(t, err)
	bad := insertUnreadableJob(t, pool, 5, time.Hour-5500*time.Millisecond)

	r, msgs := drainOneBad(t, pool, Config{BatchSize: 10, Workers: 1}, 116, bad)
	for i, m := range msgs[:15] {
		require.Equal(t, "High", m.Values["company"], "entry %d: the high-priority jobs go first", i)
	}
	require.EqualValues(t, 1, counterValue(t, r.m.Errors.WithLabelValues("claim")), "the claim that met the row")
}

// TestAnUnreadableRowOfAFairClaimIsIsolatedAtOnce: with TenantFair, a row
// at the head of one tenant's jobs, behind many older jobs of another,
// fails the fair claim that serves its tenant. The isolating cycle shares
// its claim between the tenants as the failed claim did, so it meets the
// row at once: claiming by priority alone would relay ten of the other
// tenant's jobs per isolating cycle, and every fair claim in between would
// fail on the row again, until the other tenant's jobs were all gone. A
// tenant's name that cannot be read fails the fair claim's list of
// tenants, and would fail the isolating claim's too: that one claims by
// priority instead, and the row still goes.
func TestAnUnreadableRowOfAFairClaimIsIsolatedAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		column string // the bad row's unreadable column
		// shared: the isolating claim takes the tenants' shares, so one
		// claim fails and tenant b's jobs come early; else it claims by
		// priority, and the row still goes.
		shared bool
	}{
		{name: "title", column: "title", shared: true},
		{name: "tenant", column: "tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, bad := twoTenantsOneBad(t, tc.column)
			r, msgs := drainOneBad(t, pool, Config{BatchSize: 10, Workers: 1, TenantFair: true}, 116, bad)
			var atB []int
			for i, m := range msgs {
				if m.Values["company"] == "B" {
					atB = append(atB, i)
				}
			}
			require.Len(t, atB, 15)
			if tc.shared {
				require.Less(t, atB[len(atB)-1], 40, "tenant b's jobs share the first claims with tenant a's")
				require.EqualValues(t, 1, counterValue(t, r.m.Errors.WithLabelValues("claim")), "the claim that met the row")
			}
		})
	}
}

// TestAFairIsolatingCycleKeepsTheDrainGoing: a fair claim can be short of
// its limit with a backlog behind it (shares round down, a tenant's cap
// holds it back); it says whether more may wait. The isolating cycle
// that replaces a failed fair claim must say so too: judged by its size,
// it ended the drain, and the backlog waited for the next notification
// or poll.
func TestAFairIsolatingCycleKeepsTheDrainGoing(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool, _ := twoTenantsOneBad(t, "title")
	rdb := testenv.NewRedis(t)
	// Two tenants' shares of 25 are 12 each: every claim is short of 25.
	r, err := New(pool, rdb, Config{Stream: testenv.Stream(t, rdb), MaxStreamLag: -1, MaxMemoryRatio: -1,
		BatchSize: 25, Workers: 1, TenantFair: true, PollInterval: time.Hour})
	require.NoError(t, err)
	startRelay(t, r)
	require.Eventually(t, func() bool {
		var pending int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'pending_review'`).Scan(&pending)
		return err == nil && pending == 0
	}, 10*time.Second, 10*time.Millisecond, "the backlog waits for the next poll")
}

// twoTenantsOneBad makes a database of 100 jobs of tenant a, then 16 of
// tenant b, the oldest of which has column ("title" or "tenant")
// unreadable (see insertUnreadableJob). It returns the database and that
// job's ID.
func twoTenantsOneBad(t *testing.T, column string) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := testenv.Context(t)
	pool := testenv.NewDatabase(t, "EUC_JP", "client_encoding=UTF8")
	_, err := pool.Exec(ctx, `INSERT INTO jobs (title, company, tenant, created_at)
SELECT 'A ' || g, 'A', 'a', now() - interval '2 hours' + g * interval '1 second' FROM generate_series(1, 100) g;
INSERT INTO jobs (title, company, tenant, created_at)
SELECT 'B ' || g, 'B', 'b', now() - interval '1 hour' + g * interval '1 second' FROM generate_series(1, 15) g`)
	require.NoError(t, err)
	bad := insertUnreadableJob(t, pool, 0, time.Hour)
	_, err = pool.Exec(ctx, `UPDATE jobs SET tenant = CASE WHEN $2 = 'tenant' THEN title ELSE 'b' END,
    title = CASE WHEN $2 = 'tenant' THEN 'readable' ELSE title END
WHERE id = $1`, bad, column)
	require.NoError(t, err)
	return pool, bad
}

// drainOneBad drains pool's jobs, of which there are jobs, with a relay
// of cfg on a stream of its own (no backpressure), and checks that bad
// failed and every other job was relayed. It returns the relay and the
// stream's entries.
func drainOneBad(t *testing.T, pool *pgxpool.Pool, cfg Config, jobs int, bad string) (*Relay, []redis.XMessage) {
	t.Helper()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	cfg.Stream, cfg.MaxStreamLag, cfg.MaxMemoryRatio = testenv.Stream(t, rdb), -1, -1
	r, err := New(pool, rdb, cfg)
	require.NoError(t, err)
	res, err := r.DrainReport(ctx)
	require.NoError(t, err)
	require.Equal(t, jobs, res.Jobs)
	require.Equal(t, []string{bad}, res.Failed)
	msgs, err := rdb.XRange(ctx, cfg.Stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, jobs-1)
	return r, msgs
}

// insertUnreadableJob inserts a job at priority, created ago before now,
// whose title has no equivalent in UTF-8: pool's database is in EUC-JP
// and its client asks for UTF-8, so every statement that reads the title
// fails. It returns the job's ID.
func insertUnreadableJob(t *testing.T, pool *pgxpool.Pool, priority int, ago time.Duration) string {
	t.Helper()
	var id string
	require.NoError(t, pool.QueryRow(testenv.Context(t), `INSERT INTO jobs (title, company, priority, created_at)
VALUES (convert_from('\xf5a1'::bytea, 'EUC_JP'), 'Unreadable', $1, now() - $2 * interval '1 microsecond')
RETURNING id::text`, priority, ago.Microseconds()).Scan(&id))
	return id
}
