package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Finished identifies a job's stream entry by job and attempt, for the
// compare-and-set updates of the consumer.
type Finished struct {
	IDs      []string
	Attempts []int32 // the entry's attempt, index for index
	Errors   []string
}

// finishedCAS matches jobs still waiting for the outcome of this attempt:
// in_review with this attempt, or pending_review one attempt earlier. The
// second case is a relay that published the entry and has not committed
// yet: the UPDATE then waits for the relay's row lock and, once the relay
// commits, re-checks the row and finds it in_review. If the relay rolled
// back instead, the job was still handled successfully; recording it spares
// a second review. A job reviewed, failed, archived or re-published under a
// later attempt does not match.
const finishedCAS = `jobs.id = b.id AND (
    (jobs.status = 'in_review' AND jobs.attempts = b.attempt) OR
    (jobs.status = 'pending_review' AND jobs.attempts = b.attempt - 1))`

const markReviewedSQL = `
UPDATE jobs SET status = 'reviewed', updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS b(id, attempt)
WHERE ` + finishedCAS

const markFailedSQL = `
UPDATE jobs SET status = 'failed', last_error = b.last_error, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::text[]) AS b(id, attempt, last_error)
WHERE ` + finishedCAS

const recordErrorsSQL = `
UPDATE jobs SET last_error = b.last_error, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::text[]) AS b(id, attempt, last_error)
WHERE ` + finishedCAS

// JobState is a job's status and publish attempts.
type JobState struct {
	Status   string
	Attempts int32
}

// JobStatuses returns the state of each job that exists among ids.
func JobStatuses(ctx context.Context, q DBTX, ids []string) (map[string]JobState, error) {
	rows, err := q.Query(ctx, `SELECT id::text, status, attempts FROM jobs WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("read job statuses: %w", err)
	}
	defer rows.Close()
	out := make(map[string]JobState, len(ids))
	for rows.Next() {
		var id string
		var st JobState
		if err := rows.Scan(&id, &st.Status, &st.Attempts); err != nil {
			return nil, fmt.Errorf("read job statuses: %w", err)
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read job statuses: %w", err)
	}
	return out, nil
}

// RetryFailed sends failed jobs back to pending_review so the relay publishes
// them again: all of them when id is empty, else only that one. attempts is
// kept; last_error is cleared. It returns how many jobs changed, and
// ErrNotFound when id names no failed job.
func RetryFailed(ctx context.Context, q DBTX, id string) (int64, error) {
	const sql = `
UPDATE jobs SET status = 'pending_review', last_error = NULL, updated_at = now()
WHERE status = 'failed'`
	var (
		n   int64
		err error
	)
	if id == "" {
		tag, e := q.Exec(ctx, sql)
		n, err = tag.RowsAffected(), e
	} else {
		tag, e := q.Exec(ctx, sql+` AND id = $1::uuid`, id)
		n, err = tag.RowsAffected(), e
	}
	if err != nil {
		return 0, fmt.Errorf("retry failed jobs: %w", err)
	}
	if id != "" && n == 0 {
		return 0, fmt.Errorf("retry job %s: no failed job with that ID: %w", id, ErrNotFound)
	}
	return n, nil
}

// Outcomes are the results of a batch of handled jobs. The reviewed ones
// are marked reviewed, the failed ones failed with their error, and the
// retried ones keep their status with the error in last_error; each only if
// the job still waits for that attempt's outcome (see finishedCAS).
type Outcomes struct {
	Reviewed Finished // handler succeeded
	Failed   Finished // dead-lettered, with errors
	Retried  Finished // handler failed, will be retried, with errors
}

// RecordOutcomes records a batch of outcomes in one round trip and returns
// the reviewed IDs that did not change (usually none).
func RecordOutcomes(ctx context.Context, q Batcher, o *Outcomes) ([]string, error) {
	var b pgx.Batch
	var updated int64
	if len(o.Reviewed.IDs) > 0 {
		ids, err := uuids(o.Reviewed.IDs)
		if err != nil {
			return nil, fmt.Errorf("mark jobs reviewed: %w", err)
		}
		b.Queue(markReviewedSQL, ids, o.Reviewed.Attempts).Exec(func(ct pgconn.CommandTag) error {
			updated = ct.RowsAffected()
			return nil
		})
	}
	if len(o.Failed.IDs) > 0 {
		ids, err := uuids(o.Failed.IDs)
		if err != nil {
			return nil, fmt.Errorf("mark jobs failed: %w", err)
		}
		b.Queue(markFailedSQL, ids, o.Failed.Attempts, o.Failed.Errors)
	}
	if len(o.Retried.IDs) > 0 {
		ids, err := uuids(o.Retried.IDs)
		if err != nil {
			return nil, fmt.Errorf("record job errors: %w", err)
		}
		b.Queue(recordErrorsSQL, ids, o.Retried.Attempts, o.Retried.Errors)
	}
	if b.Len() == 0 {
		return nil, nil
	}
	if err := q.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("record review outcomes: %w", err)
	}
	if updated == int64(len(o.Reviewed.IDs)) {
		return nil, nil
	}
	statuses, err := JobStatuses(ctx, q, o.Reviewed.IDs)
	if err != nil {
		return nil, err
	}
	var unchanged []string
	for _, id := range o.Reviewed.IDs {
		if statuses[id].Status != StatusReviewed {
			unchanged = append(unchanged, id)
		}
	}
	return unchanged, nil
}
