package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// soon waits for cond, for less long than eventually: these tests wait for
// things that used to never happen.
func soon(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 5*time.Millisecond, msg)
}

func (b *testBundle) deadLetters(t *testing.T) []redis.XMessage {
	t.Helper()
	msgs, err := b.rdb.XRange(testenv.Context(t), "{"+b.stream+"}:dead", "-", "+").Result()
	require.NoError(t, err)
	return msgs
}

// row reads a job's status and last_error.
func (b *testBundle) row(t *testing.T, id string) (status string, lastError *string) {
	t.Helper()
	require.NoError(t, b.schema.Pool.QueryRow(testenv.Context(t),
		`SELECT status, last_error FROM jobs WHERE id = $1`, id).Scan(&status, &lastError))
	return status, lastError
}

func TestAMalformedEntryIsDeadLetteredBeforeTheHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	b.publish(t, 10)
	// Entries nobody can record, among good ones: the relay never writes
	// them, a hand or another program might.
	poison := []map[string]any{
		{"job_id": "not-a-uuid", "attempt": "1"},
		{"job_id": "6f1c2a5e-8d1b-4a7e-9c3f-2b5d7e9a1c4f", "attempt": "4294967296"}, // overflows int32
		{"job_id": "6f1c2a5e-8d1b-4a7e-9c3f-2b5d7e9a1c4\x00", "attempt": "1"},
		{"job_id": "6f1c2a5e-8d1b-4a7e-9c3f-2b5d7e9a1c4f", "attempt": "0"},
		{"attempt": "1", "title": "no job_id"},
		{"job_id": strings.Repeat("a", 1<<20), "attempt": "1"},
	}
	for _, v := range poison {
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: v}).Err())
	}
	good := b.publish(t, 10) // ten more after them: 20 in_review
	require.Len(t, good, 20)

	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	c, _ := b.start(t, cfg)
	soon(t, func() bool { return b.count(t, db.StatusReviewed) == 20 }, "every good job reviewed")
	soon(t, func() bool { return b.pending(t) == 0 }, "every entry acknowledged")
	require.Equal(t, 20, seen.total(), "the handler never ran for a malformed entry")
	for _, id := range good {
		require.Equal(t, 1, seen.get(id))
	}

	dead := b.deadLetters(t)
	require.Len(t, dead, len(poison))
	var errs []string
	for _, m := range dead {
		require.Contains(t, m.Values["error"], "malformed entry")
		require.Less(t, len(m.Values["error"].(string)), 500, "the error quotes a huge field, not all of it")
		errs = append(errs, m.Values["error"].(string))
	}
	require.Contains(t, errs, `malformed entry: job_id "not-a-uuid" is not a UUID`)
	require.Contains(t, errs, `malformed entry: attempt "4294967296" is not a number from 1 to 2147483647`)
	require.Contains(t, errs, `malformed entry: no job_id`)
	require.NoError(t, c.Ready())
}

// refuse installs a trigger that raises, with SQLSTATE code, when job id
// is updated to one of statuses.
func refuse(t *testing.T, b *testBundle, id, code string, statuses ...string) {
	t.Helper()
	list := "'" + strings.Join(statuses, "','") + "'"
	_, err := b.schema.Pool.Exec(testenv.Context(t), `
CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = '`+id+`' AND NEW.status IN (`+list+`) THEN
        RAISE EXCEPTION 'job % is under legal hold', NEW.id USING ERRCODE = '`+code+`';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_update BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION refuse_update();`)
	require.NoError(t, err)
}

func TestARowTheDatabaseRefusesIsFailedAndTheOthersRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 50)
	offender := ids[17]
	refuse(t, b, offender, "P0001", db.StatusReviewed)

	var seen calls
	cfg := b.cfg
	cfg.Concurrency = 16
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error { seen.add(j.ID); return nil })
	c, _ := b.start(t, cfg)
	soon(t, func() bool { return b.count(t, db.StatusReviewed) == 49 }, "the others reviewed")
	soon(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "the offender failed")
	status, lastError := b.row(t, offender)
	require.Equal(t, db.StatusFailed, status)
	require.NotNil(t, lastError)
	require.Contains(t, *lastError, "is under legal hold")
	require.Contains(t, *lastError, "refused to record")
	soon(t, func() bool { return b.pending(t) == 0 }, "every entry acknowledged")
	dead := b.deadLetters(t)
	require.Len(t, dead, 1, "a failed job has its dead letter")
	require.Equal(t, offender, dead[0].Values["job_id"])
	require.Contains(t, dead[0].Values["error"], "is under legal hold")
	require.Equal(t, 50, seen.total(), "the handler ran once per job")
	require.NoError(t, c.Ready())
}

func TestARowThatCannotEvenFailIsDeadLetteredAndAcknowledged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 20)
	offender := ids[3]
	refuse(t, b, offender, "23514", db.StatusReviewed, db.StatusFailed)

	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	c, _ := b.start(t, cfg)
	soon(t, func() bool { return b.count(t, db.StatusReviewed) == 19 }, "the others reviewed")
	soon(t, func() bool { return b.pending(t) == 0 }, "the offender's entry acknowledged too")
	status, _ := b.row(t, offender)
	require.Equal(t, db.StatusInReview, status, "its row is left as it is")
	dead := b.deadLetters(t)
	require.Len(t, dead, 1)
	require.Equal(t, offender, dead[0].Values["job_id"])
	require.Contains(t, dead[0].Values["error"], "is under legal hold")
	soon(t, func() bool { return len(b.logs.Matching("cannot be marked failed")) == 1 }, "said at Error")
	require.Equal(t, "ERROR", b.logs.Matching("cannot be marked failed")[0].Level.String())
	require.NoError(t, c.Ready())
}

func TestAnErrorTheDatabaseCannotStoreIsStillRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 2)
	cfg := b.cfg
	cfg.MaxDeliveries = 1
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error {
		if j.ID == ids[0] {
			// A NUL byte and invalid UTF-8, cut in the middle of a rune at
			// the length limit: PostgreSQL takes none of them in text.
			return errors.New("stderr:\x00\xff " + strings.Repeat("é", 1500))
		}
		return nil
	})
	c, _ := b.start(t, cfg)
	soon(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "failed with its error")
	status, lastError := b.row(t, ids[0])
	require.Equal(t, db.StatusFailed, status)
	require.True(t, strings.HasPrefix(*lastError, "stderr:"), *lastError)
	soon(t, func() bool { return b.count(t, db.StatusReviewed) == 1 }, "the other reviewed")
	require.NoError(t, c.Ready())
}

func TestARecorderThatCannotMakeProgressSaysSo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 10)
	// Not a row's data: a serialization failure, retried as long as it
	// lasts.
	refuse(t, b, ids[4], "40001", db.StatusReviewed)

	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	c, err := New(b.schema.Pool, b.rdb, cfg)
	require.NoError(t, err)
	c.stallAfter, c.healthEvery = 300*time.Millisecond, 20*time.Millisecond
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	soon(t, func() bool { return c.Ready() != nil }, "not ready while wedged")
	require.ErrorContains(t, c.Ready(), "recording results is stalled")
	require.ErrorContains(t, c.Ready(), "is under legal hold (SQLSTATE 40001)")
	soon(t, func() bool { return testutil.ToFloat64(c.m.RecorderStalled) == 1 }, "the gauge says so")
	var reports []stream.HealthReport
	soon(t, func() bool {
		reports, err = stream.Problems(ctx, b.rdb, b.stream, time.Now(), stream.HealthStaleAfter)
		require.NoError(t, err)
		return len(reports) == 1
	}, "reported to Redis for status --check")
	require.Equal(t, "consumer "+c.Name(), reports[0].Component)
	require.Contains(t, reports[0].Problem, "is under legal hold")
	require.False(t, reports[0].Since.IsZero())
	status, _ := b.row(t, ids[4])
	require.Equal(t, db.StatusInReview, status, "an outage is retried, not blamed on the row")

	_, err = b.schema.Pool.Exec(ctx, `DROP TRIGGER refuse_update ON jobs`)
	require.NoError(t, err)
	soon(t, func() bool { return b.count(t, db.StatusReviewed) == 10 }, "recorded once the failure ends")
	soon(t, func() bool { return c.Ready() == nil }, "ready again")
	soon(t, func() bool { return testutil.ToFloat64(c.m.RecorderStalled) == 0 }, "the gauge too")
	soon(t, func() bool {
		n, err := b.rdb.HLen(ctx, stream.HealthKey(b.stream)).Result()
		require.NoError(t, err)
		return n == 0
	}, "the report removed")
}
