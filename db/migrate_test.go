package db_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// schemaShape describes a schema's jobs table, indexes, constraints and
// triggers, to compare two ways of migrating.
func schemaShape(ctx context.Context, t *testing.T, s *testenv.Schema) []string {
	t.Helper()
	rows, err := s.Pool.Query(ctx, `
SELECT 'column ' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'jobs'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs'
UNION ALL
SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1
UNION ALL
SELECT 'trigger ' || tgname FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid
JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = $1 AND NOT tgisinternal
ORDER BY 1`, s.Name)
	require.NoError(t, err)
	shape, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	// Index definitions name the schema; drop it so two schemas compare.
	for i := range shape {
		shape[i] = strings.ReplaceAll(shape[i], s.Name+".", "")
	}
	return shape
}

func TestMigrations(t *testing.T) {
	t.Parallel()

	t.Run("UpDownToZeroUp", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t)
		s := testenv.NewEmptySchema(t)
		m, err := db.NewMigrator(ctx, s.Pool, nil)
		require.NoError(t, err)
		defer m.Close()

		res, err := m.Up(ctx)
		require.NoError(t, err)
		require.Len(t, res, 6)
		want := schemaShape(ctx, t, s)
		require.Contains(t, want, "trigger jobs_notify_inserted_pending_review")
		require.Contains(t, want, "index CREATE INDEX jobs_pending_review_created_at_idx ON jobs USING btree (created_at) WHERE (status = 'pending_review'::text)")

		_, err = m.DownTo(ctx, 0)
		require.NoError(t, err)
		v, err := m.GetDBVersion(ctx)
		require.NoError(t, err)
		require.Zero(t, v)
		// The application's table survives migrating down, without jobrelay's columns.
		var cols []string
		rows, err := s.Pool.Query(ctx, `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'jobs' ORDER BY ordinal_position`, s.Name)
		require.NoError(t, err)
		cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{"id", "site", "job_url", "title", "company", "location", "description", "created_at"}, cols)

		_, err = m.Up(ctx)
		require.NoError(t, err)
		require.Equal(t, want, schemaShape(ctx, t, s))
	})

	t.Run("StreamColumnDownAndUp", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t)
		s := testenv.NewSchema(t)
		_, err := s.Pool.Exec(ctx, `INSERT INTO jobs (title, status, stream_id, enqueued_at, stream) VALUES ('a', 'in_review', '1-1', now(), 'review')`)
		require.NoError(t, err)
		m, err := db.NewMigrator(ctx, s.Pool, nil)
		require.NoError(t, err)
		defer m.Close()
		// Down drops the column only; the job keeps the rest of its bookkeeping.
		_, err = m.DownTo(ctx, db.StreamVersion)
		require.NoError(t, err)
		full := schemaShape(ctx, t, s)
		require.Contains(t, full, "column stream text YES ")
		res, err := m.Down(ctx)
		require.NoError(t, err)
		require.Equal(t, "00004_job_stream.sql", res.Source.Path)
		shape := schemaShape(ctx, t, s)
		require.NotContains(t, shape, "column stream text YES ")
		require.Len(t, shape, len(full)-1)
		var streamID string
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT stream_id FROM jobs WHERE status = 'in_review'`).Scan(&streamID))
		require.Equal(t, "1-1", streamID)

		// Up brings it back, NULL for the rows that were there: legacy rows.
		_, err = m.UpTo(ctx, db.StreamVersion)
		require.NoError(t, err)
		require.Equal(t, full, schemaShape(ctx, t, s))
		var stream *string
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT stream FROM jobs`).Scan(&stream))
		require.Nil(t, stream)
	})

	t.Run("GooseCLIGivesTheSameSchema", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t)
		embedded := testenv.NewSchema(t)
		cli := testenv.NewEmptySchema(t)
		// What `goose -dir goose postgres "$DATABASE_URL" up` runs: the files
		// on disk through goose's package-level API.
		sqlDB := stdlib.OpenDBFromPool(cli.Pool)
		defer sqlDB.Close()
		require.NoError(t, goose.SetDialect("postgres"))
		require.NoError(t, goose.UpContext(ctx, sqlDB, "../goose"))
		require.Equal(t, schemaShape(ctx, t, embedded), schemaShape(ctx, t, cli))
	})

	t.Run("ExistingTableKeepsItsRows", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t)
		s := testenv.NewEmptySchema(t)
		// The application's table as it was before jobrelay, with data.
		_, err := s.Pool.Exec(ctx, `
CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site text, job_url text, title text, company text, location text, description text,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO jobs (title, company) SELECT 'Engineer ' || i, 'Acme' FROM generate_series(1, 50) i`)
		require.NoError(t, err)

		m, err := db.NewMigrator(ctx, s.Pool, nil)
		require.NoError(t, err)
		defer m.Close()
		_, err = m.Up(ctx)
		require.NoError(t, err)

		counts, err := db.CountByStatus(ctx, s.Pool)
		require.NoError(t, err)
		require.Equal(t, int64(50), counts[db.StatusPendingReview])
		backlog, err := db.ReadBacklog(ctx, s.Pool)
		require.NoError(t, err)
		require.Equal(t, int64(50), backlog.Pending)
		require.WithinDuration(t, time.Now(), backlog.OldestPending, time.Minute)
	})

	t.Run("ConcurrentMigratorsOfOneSchema", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t)
		s := testenv.NewEmptySchema(t)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				m, err := db.NewMigrator(ctx, s.Pool, nil)
				if err != nil {
					errs <- err
					return
				}
				defer m.Close()
				_, err = m.Up(ctx)
				errs <- err
			}()
		}
		for range 3 {
			require.NoError(t, <-errs)
		}
	})
}

func TestNotifyTrigger(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)

	listener, err := s.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer listener.Release()
	_, err = listener.Exec(ctx, "LISTEN "+db.NotifyChannel)
	require.NoError(t, err)

	// Other tests' schemas share the database and the channel: their
	// notifications carry their schema's name, and are skipped here.
	ours := func(timeout time.Duration) (string, error) {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		for {
			n, err := listener.Conn().WaitForNotification(wctx)
			if err != nil {
				return "", err
			}
			if n.Payload == s.Name {
				return n.Payload, nil
			}
		}
	}
	next := func() string {
		t.Helper()
		p, err := ours(10 * time.Second)
		require.NoError(t, err)
		return p
	}
	quiet := func() {
		t.Helper()
		p, err := ours(200 * time.Millisecond)
		require.Error(t, err, "unexpected notification %q", p)
	}

	// A multi-row insert notifies once, with the schema as payload.
	_, err = db.InsertJobs(ctx, s.Pool, []db.NewJob{{Title: "a"}, {Title: "b"}, {Title: "c"}})
	require.NoError(t, err)
	require.Equal(t, s.Name, next())
	quiet()

	id, err := db.InsertJob(ctx, s.Pool, db.NewJob{Title: "d"})
	require.NoError(t, err)
	require.Equal(t, s.Name, next())

	// The relay's move to in_review notifies nothing; a move back does.
	_, err = s.Pool.Exec(ctx, `UPDATE jobs SET status = 'in_review' WHERE id = $1`, id)
	require.NoError(t, err)
	quiet()
	_, err = s.Pool.Exec(ctx, `UPDATE jobs SET status = 'pending_review' WHERE id = $1`, id)
	require.NoError(t, err)
	require.Equal(t, s.Name, next())

	// Inserting rows that are not pending (an import of old data) notifies nothing.
	_, err = s.Pool.Exec(ctx, `INSERT INTO jobs (title, status) VALUES ('old', 'reviewed')`)
	require.NoError(t, err)
	quiet()
}
