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
	Attempts []int32 // the entry's attempt, index for index (successes win whatever the attempt)
	Errors   []string
}

// finishedCAS matches jobs still waiting for the outcome of this attempt:
// in_review with this attempt, or pending_review one attempt earlier. The
// second case is a relay that published the entry and has not committed
// yet: the UPDATE then waits for the relay's row lock and, once the relay
// commits, re-checks the row and finds it in_review. If the relay rolled
// back instead, the job was still handled; recording it spares a second
// review. A job reviewed, failed, archived or re-published under a later
// attempt does not match. Failures and errors are recorded under it;
// successes are not (see markReviewedSQL).
const finishedCAS = `jobs.id = b.id AND (
    (jobs.status = 'in_review' AND jobs.attempts = b.attempt) OR
    (jobs.status = 'pending_review' AND jobs.attempts = b.attempt - 1))`

// markReviewedSQL records successes. A success wins over every status but
// archived (the application's) and reviewed (nothing to do), whatever the
// attempt: a job whose handler succeeded is reviewed, even if its entry
// was dead-lettered meanwhile by a consumer that took it over (see
// reviveFailedSQL), or it was published again since. A pending_review job
// is then never claimed again, since the relay claims only pending_review
// rows; if a relay holds the row locked, between its claim and its commit,
// the UPDATE waits for it and re-checks the committed row, in_review. The
// handler's success also ends the story of its errors: last_error is
// cleared.
const markReviewedSQL = `
UPDATE jobs SET status = 'reviewed', last_error = NULL, updated_at = now()
FROM unnest($1::uuid[]) AS b(id)
WHERE jobs.id = b.id AND jobs.status IN ('in_review', 'pending_review')`

// reviveFailedSQL records successes of jobs failed meanwhile: another
// consumer dead-lettered the entry while its handler ran here. It is a
// statement of its own, run only when markReviewedSQL did not update every
// job, so that the usual batch does not pay for it; it returns the jobs,
// whose dead letters are then obsolete.
const reviveFailedSQL = `
UPDATE jobs SET status = 'reviewed', last_error = NULL, updated_at = now()
FROM unnest($1::uuid[]) AS b(id)
WHERE jobs.id = b.id AND jobs.status = 'failed'
RETURNING jobs.id::text`

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
	ids, err := RetryFailedJobs(ctx, q, id)
	return int64(len(ids)), err
}

// RetryFailedJobs is RetryFailed returning the IDs of the jobs it sent back,
// whose dead letters are then obsolete.
func RetryFailedJobs(ctx context.Context, q DBTX, id string) ([]string, error) {
	const sql = `
UPDATE jobs SET status = 'pending_review', last_error = NULL, updated_at = now()
WHERE status = 'failed'`
	var (
		rows pgx.Rows
		err  error
	)
	if id == "" {
		rows, err = q.Query(ctx, sql+` RETURNING id::text`)
	} else {
		rows, err = q.Query(ctx, sql+` AND id = $1::uuid RETURNING id::text`, id)
	}
	if err != nil {
		return nil, fmt.Errorf("retry failed jobs: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("retry failed jobs: %w", err)
	}
	if id != "" && len(ids) == 0 {
		return nil, fmt.Errorf("retry job %s: no failed job with that ID: %w", id, ErrNotFound)
	}
	return ids, nil
}

// Outcomes are the results of a batch of handled jobs. The reviewed ones
// are marked reviewed (see markReviewedSQL), the failed ones failed with
// their error, and the retried ones keep their status with the error in
// last_error; these two only if the job still waits for that attempt's
// outcome (see finishedCAS).
type Outcomes struct {
	Reviewed Finished // handler succeeded
	Failed   Finished // dead-lettered, with errors
	Retried  Finished // handler failed, will be retried, with errors
}

// Recorded is what RecordOutcomes found beyond the usual case.
type Recorded struct {
	// Unchanged are the reviewed IDs whose job is not reviewed: archived,
	// or deleted.
	Unchanged []string
	// Undead are jobs reviewed now that were, or were about to be,
	// dead-lettered: failed jobs a late success marked reviewed, and jobs
	// of Failed that a success marked reviewed first. Their dead letters
	// are obsolete.
	Undead []string
}

// RecordOutcomes records a batch of outcomes, in one round trip unless some
// job was not waiting for its outcome any more (rare). The batch is one
// transaction: on error nothing was recorded.
func RecordOutcomes(ctx context.Context, q Batcher, o *Outcomes) (Recorded, error) {
	var b pgx.Batch
	var reviewed, failed int64
	var reviewedIDs, failedIDs [][16]byte
	var err error
	if len(o.Reviewed.IDs) > 0 {
		if reviewedIDs, err = uuids(o.Reviewed.IDs); err != nil {
			return Recorded{}, fmt.Errorf("mark jobs reviewed: %w", err)
		}
		b.Queue(markReviewedSQL, reviewedIDs).Exec(func(ct pgconn.CommandTag) error {
			reviewed = ct.RowsAffected()
			return nil
		})
	}
	if len(o.Failed.IDs) > 0 {
		if failedIDs, err = uuids(o.Failed.IDs); err != nil {
			return Recorded{}, fmt.Errorf("mark jobs failed: %w", err)
		}
		b.Queue(markFailedSQL, failedIDs, o.Failed.Attempts, o.Failed.Errors).Exec(func(ct pgconn.CommandTag) error {
			failed = ct.RowsAffected()
			return nil
		})
	}
	if len(o.Retried.IDs) > 0 {
		ids, err := uuids(o.Retried.IDs)
		if err != nil {
			return Recorded{}, fmt.Errorf("record job errors: %w", err)
		}
		b.Queue(recordErrorsSQL, ids, o.Retried.Attempts, o.Retried.Errors)
	}
	if b.Len() == 0 {
		return Recorded{}, nil
	}
	if err := q.SendBatch(ctx, &b).Close(); err != nil {
		return Recorded{}, fmt.Errorf("record review outcomes: %w", err)
	}
	var rec Recorded
	if reviewed < int64(len(o.Reviewed.IDs)) {
		if rec, err = recordLateSuccesses(ctx, q, o.Reviewed.IDs, reviewedIDs); err != nil {
			return Recorded{}, err
		}
	}
	if failed < int64(len(o.Failed.IDs)) {
		statuses, err := JobStatuses(ctx, q, o.Failed.IDs)
		if err != nil {
			return Recorded{}, err
		}
		for _, id := range o.Failed.IDs {
			if statuses[id].Status == StatusReviewed {
				rec.Undead = append(rec.Undead, id)
			}
		}
	}
	return rec, nil
}

// recordLateSuccesses marks reviewed the jobs of ids that were failed
// meanwhile, and lists those that did not become reviewed.
func recordLateSuccesses(ctx context.Context, q DBTX, ids []string, binIDs [][16]byte) (Recorded, error) {
	var rec Recorded
	rows, err := q.Query(ctx, reviveFailedSQL, binIDs)
	if err != nil {
		return rec, fmt.Errorf("mark failed jobs reviewed: %w", err)
	}
	if rec.Undead, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return rec, fmt.Errorf("mark failed jobs reviewed: %w", err)
	}
	statuses, err := JobStatuses(ctx, q, ids)
	if err != nil {
		return rec, err
	}
	for _, id := range ids {
		if statuses[id].Status != StatusReviewed {
			rec.Unchanged = append(rec.Unchanged, id)
		}
	}
	return rec, nil
}
