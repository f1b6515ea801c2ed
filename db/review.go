package db

import (
	"context"
	"fmt"
)

// MarkReviewed marks handled jobs reviewed, in one statement. It is a
// compare-and-set: only jobs still in_review change, so a job that was
// failed, archived or sent back meanwhile keeps its status. It returns the
// IDs that did not change (usually none).
func MarkReviewed(ctx context.Context, q DBTX, ids []string) ([]string, error) {
	tag, err := q.Exec(ctx, `
UPDATE jobs SET status = 'reviewed', updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'in_review'`, ids)
	if err != nil {
		return nil, fmt.Errorf("mark jobs reviewed: %w", err)
	}
	if tag.RowsAffected() == int64(len(ids)) {
		return nil, nil
	}
	// Rare: find which ones, for the log.
	statuses, err := JobStatuses(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	var unchanged []string
	for _, id := range ids {
		if statuses[id] != StatusReviewed {
			unchanged = append(unchanged, id)
		}
	}
	return unchanged, nil
}

// RecordErrors stores the latest handler error of jobs that will be retried,
// so an operator sees why a job is slow to finish. Only in_review jobs change.
func RecordErrors(ctx context.Context, q DBTX, ids, errs []string) error {
	_, err := q.Exec(ctx, `
UPDATE jobs SET last_error = b.last_error, updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS b(id, last_error)
WHERE jobs.id = b.id AND jobs.status = 'in_review'`, ids, errs)
	if err != nil {
		return fmt.Errorf("record job errors: %w", err)
	}
	return nil
}

// MarkFailed marks dead-lettered jobs failed with their last error. Only
// in_review jobs change (compare-and-set).
func MarkFailed(ctx context.Context, q DBTX, ids, errs []string) error {
	_, err := q.Exec(ctx, `
UPDATE jobs SET status = 'failed', last_error = b.last_error, updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS b(id, last_error)
WHERE jobs.id = b.id AND jobs.status = 'in_review'`, ids, errs)
	if err != nil {
		return fmt.Errorf("mark jobs failed: %w", err)
	}
	return nil
}

// JobStatuses returns the status of each job that exists among ids.
func JobStatuses(ctx context.Context, q DBTX, ids []string) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT id::text, status FROM jobs WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("read job statuses: %w", err)
	}
	defer rows.Close()
	out := make(map[string]string, len(ids))
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			return nil, fmt.Errorf("read job statuses: %w", err)
		}
		out[id] = status
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
