package relay

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// countWhere counts the jobs a condition selects.
func (b *testBundle) countWhere(t *testing.T, cond string) int {
	t.Helper()
	var n int
	require.NoError(t, b.schema.Pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM jobs WHERE `+cond).Scan(&n))
	return n
}

// relayLost relays n new jobs with r, then makes their entries lost an
// hour after publishing: the stream is deleted, as a Redis that restarted
// empty would leave it.
func (b *testBundle) relayLost(t *testing.T, r *Relay, n int) {
	t.Helper()
	ctx := testenv.Context(t)
	b.seed(t, n)
	relayed, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, n, relayed)
	b.sql(t, `UPDATE jobs SET enqueued_at = enqueued_at - interval '1 hour'`)
	require.NoError(t, b.rdb.Del(ctx, b.stream).Err())
}

func TestReaperReenqueuesJobsWithoutBookkeeping(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.ReenqueueAfter = 10 * time.Minute
	r := b.newRelay(t, cfg)

	// 150 jobs published by the relay an hour ago, whose entries are gone.
	b.relayLost(t, r, 150)

	// 250 in_review without bookkeeping, as the old poller left them an
	// hour ago (more than one batch of the reaper's scan), one with an
	// entry ID but no enqueued_at, and one the application inserted as
	// in_review just now.
	b.sql(t, `
INSERT INTO jobs (title, status, updated_at) SELECT 'old poller ' || i, 'in_review', now() - interval '1 hour' FROM generate_series(1, 250) i;
INSERT INTO jobs (title, status, updated_at, stream_id) VALUES ('entry, no time', 'in_review', now() - interval '1 hour', '1-1');
INSERT INTO jobs (title, status) VALUES ('just inserted', 'in_review')`)

	require.NoError(t, r.reap(ctx))
	require.Equal(t, 401, b.countWhere(t, `status = 'pending_review'`))
	require.Equal(t, 1, b.countWhere(t, `status = 'in_review' AND title = 'just inserted'`),
		"a row without bookkeeping counts its age from updated_at: not yet REENQUEUE_AFTER old")
	require.Equal(t, 1, b.countWhere(t, `title = 'old poller 1' AND last_error LIKE '%without a stream entry%'`))
	require.EqualValues(t, 401, counterValue(t, r.m.JobsReaped))

	// Once it is old enough, it goes back too; then all are relayed.
	b.sql(t, `UPDATE jobs SET updated_at = now() - interval '11 minutes' WHERE title = 'just inserted'`)
	require.NoError(t, r.reap(ctx))
	require.Zero(t, b.countWhere(t, `status = 'in_review'`))
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 402, n)
	require.Equal(t, 402, b.requireEveryInReviewPublished(t))
	require.Equal(t, 150, b.countWhere(t, `attempts = 2`), "the relay's own jobs: their second attempt")
	require.Equal(t, 252, b.countWhere(t, `attempts = 1`), "the others: their first attempt through jobrelay")
}

// requireEveryInReviewPublished checks that every in_review job has an
// entry in the stream and its bookkeeping, and returns how many there are.
func (b *testBundle) requireEveryInReviewPublished(t *testing.T) int {
	t.Helper()
	ids := map[string]string{}
	for _, e := range b.entries(t) {
		ids[e.ID] = e.Values["job_id"].(string)
	}
	rows, err := b.schema.Pool.Query(testenv.Context(t), `SELECT id::text, stream_id, enqueued_at IS NOT NULL FROM jobs WHERE status = 'in_review'`)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		var id string
		var streamID *string
		var enqueued bool
		require.NoError(t, rows.Scan(&id, &streamID, &enqueued))
		require.NotNil(t, streamID, "job %s", id)
		require.True(t, enqueued, "job %s", id)
		require.Equal(t, id, ids[*streamID], "job %s", id)
		n++
	}
	require.NoError(t, rows.Err())
	return n
}

func TestOldPollerLeftoversAreRelayedAfterMigrating(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	// The README's migration path: the owner's two migrations only, and
	// rows the old poller left in_review, then jobrelay's migrations.
	s := testenv.NewEmptySchema(t)
	b.schema = s
	m, err := db.NewMigrator(ctx, s.Pool, nil)
	require.NoError(t, err)
	defer m.Close()
	_, err = m.UpTo(ctx, 2)
	require.NoError(t, err)
	b.sql(t, `
INSERT INTO jobs (title, status, updated_at) VALUES
  ('left in review 1', 'in_review', now() - interval '2 hours'),
  ('left in review 2', 'in_review', now() - interval '1 hour'),
  ('moments ago', 'in_review', now()),
  ('waiting', 'pending_review', now())`)
	_, err = m.Up(ctx)
	require.NoError(t, err)

	backlog, err := db.ReadBacklog(ctx, s.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 3, backlog.InReview)
	require.EqualValues(t, 3, backlog.InReviewUntracked)
	require.WithinDuration(t, time.Now().Add(-2*time.Hour), backlog.OldestInReview, time.Minute,
		"the oldest in_review age counts rows without bookkeeping, by updated_at")

	cfg := b.cfg
	cfg.ReenqueueAfter = 30 * time.Minute
	r := b.newRelay(t, cfg)
	startRelay(t, r)
	require.Eventually(t, func() bool { return b.countWhere(t, `status = 'in_review' AND stream_id IS NOT NULL`) == 3 },
		30*time.Second, 5*time.Millisecond)
	require.Len(t, b.entries(t), 3)
	require.Equal(t, 1, b.countWhere(t, `status = 'in_review' AND stream_id IS NULL AND title = 'moments ago'`),
		"in_review for less than REENQUEUE_AFTER: left alone for now")
	require.EqualValues(t, 2, counterValue(t, r.m.JobsReaped))
}

func TestReaperLogsOneLinePerPassAndOnlyWhatItChanged(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.ReenqueueAfter = time.Minute
	r := b.newRelay(t, cfg)
	b.seed(t, 30)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, n)
	// Every entry is lost, but 5 of the jobs refuse to go back (as if a
	// consumer had finished them between the reaper's look and its update).
	b.sql(t, `
UPDATE jobs SET enqueued_at = enqueued_at - interval '1 hour';
UPDATE jobs SET location = 'keep' WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 5);
CREATE FUNCTION keep_in_review() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.location = 'keep' AND NEW.status = 'pending_review' THEN RETURN NULL; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER keep_in_review BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION keep_in_review()`)
	require.NoError(t, b.rdb.Del(ctx, b.stream).Err())
	kept := map[string]bool{}
	for id, row := range b.rows(t) {
		if b.countWhere(t, `location = 'keep' AND id = '`+id+`'`) == 1 {
			kept[id] = true
			require.Equal(t, db.StatusInReview, row.Status)
		}
	}
	require.Len(t, kept, 5)

	before := len(b.logger.Records())
	require.NoError(t, r.reap(ctx))
	logged := b.logger.Records()[before:]
	require.Len(t, logged, 1, "one line per pass: %v", logged)
	line := logged[0]
	require.Contains(t, line.Message, "reaper")
	require.Equal(t, "30", line.Attrs["num_found"])
	require.Equal(t, "25", line.Attrs["num_reenqueued"])
	examples := strings.Fields(strings.Trim(line.Attrs["job_ids"], "[]"))
	require.NotEmpty(t, examples)
	require.LessOrEqual(t, len(examples), 10)
	for _, id := range examples {
		require.False(t, kept[id], "job %s was not re-enqueued", id)
	}
	require.EqualValues(t, 25, counterValue(t, r.m.JobsReaped))
	require.Equal(t, 25, b.countWhere(t, `status = 'pending_review'`))

	// The next pass finds the 5 again and changes none: it says so, and
	// claims nothing.
	before = len(b.logger.Records())
	require.NoError(t, r.reap(ctx))
	logged = b.logger.Records()[before:]
	require.Len(t, logged, 1, "one line per pass: %v", logged)
	require.Equal(t, "5", logged[0].Attrs["num_found"])
	require.Equal(t, "0", logged[0].Attrs["num_reenqueued"])
	require.NotContains(t, logged[0].Message, "re-enqueued jobs")
	require.EqualValues(t, 25, counterValue(t, r.m.JobsReaped))
}

func TestTwoStreamsOnOneDatabase(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	streamB := testenv.Stream(t, b.rdb)
	cfgA := b.cfg
	cfgA.PollInterval = 20 * time.Millisecond // the reaper's tick
	cfgA.ReenqueueAfter = time.Millisecond
	cfgB := cfgA
	cfgB.Stream = streamB
	a, bb := b.newRelay(t, cfgA), b.newRelay(t, cfgB)

	// Each deployment publishes some jobs, then both run side by side and
	// claim from the same pending pool.
	b.seed(t, 100)
	n, err := a.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 100, n)
	b.seed(t, 100)
	n, err = bb.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 100, n)
	startRelay(t, a)
	startRelay(t, bb)
	b.seed(t, 100)
	require.Eventually(t, func() bool { return b.countWhere(t, `status = 'in_review'`) == 300 }, 30*time.Second, 5*time.Millisecond)

	// Many reaper passes later, on jobs long past REENQUEUE_AFTER, nothing
	// was re-enqueued: each reaper looks only at its own stream's jobs.
	cycles := cyclesRun(t, a) + cyclesRun(t, bb)
	require.Eventually(t, func() bool { return cyclesRun(t, a)+cyclesRun(t, bb) >= cycles+20 }, 30*time.Second, 5*time.Millisecond)
	require.Zero(t, counterValue(t, a.m.JobsReaped))
	require.Zero(t, counterValue(t, bb.m.JobsReaped))
	require.Equal(t, 300, b.countWhere(t, `status = 'in_review' AND attempts = 1`))

	// A consumer group on each stream reviews every job exactly once.
	var mu sync.Mutex
	calls := map[string]int{}
	handler := consumer.HandlerFunc(func(_ context.Context, j consumer.Job) error {
		mu.Lock()
		defer mu.Unlock()
		calls[j.ID]++
		return nil
	})
	for _, s := range []string{b.stream, streamB} {
		c, err := consumer.New(b.schema.Pool, b.rdb, consumer.Config{Stream: s, Handler: handler, Block: 50 * time.Millisecond})
		require.NoError(t, err)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	require.Eventually(t, func() bool { return b.countWhere(t, `status = 'reviewed'`) == 300 }, time.Minute, 5*time.Millisecond)
	cycles = cyclesRun(t, a) + cyclesRun(t, bb)
	require.Eventually(t, func() bool { return cyclesRun(t, a)+cyclesRun(t, bb) >= cycles+10 }, 30*time.Second, 5*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, 300)
	for id, n := range calls {
		require.Equal(t, 1, n, "job %s reviewed %d times", id, n)
	}
	require.Equal(t, 300, b.countWhere(t, `status = 'reviewed' AND attempts = 1`))
	require.Zero(t, counterValue(t, a.m.JobsReaped))
	require.Zero(t, counterValue(t, bb.m.JobsReaped))
	perStream := map[string]int{}
	rows, err := b.schema.Pool.Query(ctx, `SELECT stream, count(*) FROM jobs GROUP BY stream`)
	require.NoError(t, err)
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct {
		S string
		N int
	}, error) {
		var v struct {
			S string
			N int
		}
		err := row.Scan(&v.S, &v.N)
		return v, err
	})
	require.NoError(t, err)
	for _, c := range counts {
		perStream[c.S] = c.N
	}
	require.GreaterOrEqual(t, perStream[b.stream], 100, "stream per row: %v", perStream)
	require.GreaterOrEqual(t, perStream[streamB], 100, "stream per row: %v", perStream)
	require.Equal(t, 300, perStream[b.stream]+perStream[streamB], strconv.Itoa(len(perStream)))
}
