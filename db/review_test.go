package db_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestASuccessWinsOverEveryOutcomeButArchived(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	// The attempt-1 entry of each job succeeded, late: meanwhile each job
	// went its own way.
	states := map[string]string{
		"in_review":       `status = 'in_review', attempts = 1, last_error = 'review service said 500'`,
		"dead-lettered":   `status = 'failed', attempts = 1, last_error = 'delivered 6 times'`,
		"published_again": `status = 'in_review', attempts = 2, last_error = 'stream entry lost; re-enqueued'`,
		"pending_again":   `status = 'pending_review', attempts = 2`,
		"retried":         `status = 'pending_review', attempts = 1`,
		"reviewed":        `status = 'reviewed', attempts = 1`,
		"archived":        `status = 'archived', attempts = 1, last_error = 'kept'`,
	}
	ids := map[string]string{}
	var o db.Outcomes
	for name, set := range states {
		var id string
		require.NoError(t, s.Pool.QueryRow(ctx, `INSERT INTO jobs (title) VALUES ($1) RETURNING id::text`, name).Scan(&id))
		_, err := s.Pool.Exec(ctx, `UPDATE jobs SET `+set+` WHERE id = $1`, id)
		require.NoError(t, err)
		ids[name] = id
		o.Reviewed.IDs = append(o.Reviewed.IDs, id)
		o.Reviewed.Attempts = append(o.Reviewed.Attempts, 1)
	}
	rec, err := db.RecordOutcomes(ctx, s.Pool, &o)
	require.NoError(t, err)
	require.Equal(t, []string{ids["archived"]}, rec.Unchanged)
	require.Equal(t, []string{ids["dead-lettered"]}, rec.Undead, "its dead letter must go")

	for name, id := range ids {
		var status string
		var lastError *string
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT status, last_error FROM jobs WHERE id = $1`, id).Scan(&status, &lastError))
		if name == "archived" {
			require.Equal(t, db.StatusArchived, status)
			require.Equal(t, "kept", *lastError)
			continue
		}
		require.Equal(t, db.StatusReviewed, status, name)
		require.Nil(t, lastError, name)
	}

	// A failure never overwrites a success.
	o = db.Outcomes{Failed: db.Finished{IDs: []string{ids["in_review"]}, Attempts: []int32{1}, Errors: []string{"late failure"}}}
	rec, err = db.RecordOutcomes(ctx, s.Pool, &o)
	require.NoError(t, err)
	require.Equal(t, []string{ids["in_review"]}, rec.Undead, "a dead letter written for a job reviewed meanwhile must go")
	var status string
	require.NoError(t, s.Pool.QueryRow(ctx, `SELECT status FROM jobs WHERE id = $1`, ids["in_review"]).Scan(&status))
	require.Equal(t, db.StatusReviewed, status)
}

func TestRetryFailedJobsReturnsTheJobs(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	s := testenv.NewSchema(t)
	_, err := s.Pool.Exec(ctx, `INSERT INTO jobs (title, status, last_error) VALUES ('a', 'failed', 'x'), ('b', 'failed', 'y'), ('c', 'reviewed', NULL)`)
	require.NoError(t, err)
	ids, err := db.RetryFailedJobs(ctx, s.Pool, "")
	require.NoError(t, err)
	require.Len(t, ids, 2)
	_, err = db.RetryFailedJobs(ctx, s.Pool, ids[0])
	require.ErrorIs(t, err, db.ErrNotFound)
}

func TestRowErrorsAreToldFromOutages(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"23514": true,  // check_violation
		"22021": true,  // invalid byte sequence
		"22003": true,  // numeric value out of range
		"P0001": true,  // RAISE EXCEPTION in a trigger
		"42601": true,  // syntax error, in a trigger's dynamic SQL
		"40001": false, // serialization_failure
		"40P01": false, // deadlock_detected
		"08006": false, // connection_failure
		"57014": false, // query_canceled (statement_timeout)
		"57P01": false, // admin_shutdown
		"53100": false, // disk_full
		"25006": false, // read_only_sql_transaction (a standby)
		"42P01": false, // undefined_table: the schema, not a row
		"42703": false, // undefined_column
		"42501": false, // insufficient_privilege
	} {
		err := fmt.Errorf("record review outcomes: %w", &pgconn.PgError{Code: code})
		require.Equal(t, want, db.IsRowError(err), code)
	}
	require.False(t, db.IsRowError(errors.New("dial tcp: connection refused")))
	require.False(t, db.IsRowError(nil))
}

func TestCheckJobID(t *testing.T) {
	t.Parallel()
	require.NoError(t, db.CheckJobID("6f1c2a5e-8d1b-4a7e-9c3f-2b5d7e9a1c4f"))
	for _, bad := range []string{"", "not-a-uuid", "6f1c2a5e-8d1b-4a7e-9c3f-2b5d7e9a1c4\x00", "6f1c2a5e8d1b4a7e9c3f2b5d7e9a1c4f", "{6f1c2a5e-8d1b-4a7e-9c3f-2b5d7e9a1c4f}"} {
		require.Error(t, db.CheckJobID(bad), "%q", bad)
	}
}
