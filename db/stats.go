package db

import (
	"context"
	"fmt"
	"time"
)

// Backlog is the work the pipeline has not finished, read from the partial
// indexes, so it is cheap however many jobs were reviewed.
type Backlog struct {
	Pending        int64     // jobs pending_review
	OldestPending  time.Time // created_at of the oldest, zero when none
	InReview       int64     // jobs in_review
	OldestInReview time.Time // enqueued_at of the oldest (updated_at for rows without), zero when none
	// InReviewUntracked counts the in_review jobs without the relay's
	// bookkeeping (no stream_id or no enqueued_at): left by the old poller
	// or a migration, or inserted so by the application. The reaper sends
	// them back to pending_review once their updated_at is REENQUEUE_AFTER
	// old.
	InReviewUntracked int64
}

// ReadBacklog counts pending_review and in_review jobs and finds the oldest
// of each. An in_review row without enqueued_at counts from its updated_at,
// as the reaper does, so none is left out of the oldest age.
func ReadBacklog(ctx context.Context, q DBTX) (Backlog, error) {
	var b Backlog
	var oldestPending, oldestInReview *time.Time
	err := q.QueryRow(ctx, `
SELECT (SELECT count(*) FROM jobs WHERE status = 'pending_review'),
       (SELECT min(created_at) FROM jobs WHERE status = 'pending_review'),
       (SELECT count(*) FROM jobs WHERE status = 'in_review'),
       least((SELECT min(enqueued_at) FROM jobs WHERE status = 'in_review'),
             (SELECT min(updated_at) FROM jobs WHERE status = 'in_review' AND enqueued_at IS NULL)),
       (SELECT count(*) FROM jobs WHERE status = 'in_review' AND (enqueued_at IS NULL OR stream_id IS NULL))`).
		Scan(&b.Pending, &oldestPending, &b.InReview, &oldestInReview, &b.InReviewUntracked)
	if err != nil {
		return Backlog{}, fmt.Errorf("read backlog: %w", err)
	}
	if oldestPending != nil {
		b.OldestPending = *oldestPending
	}
	if oldestInReview != nil {
		b.OldestInReview = *oldestInReview
	}
	return b, nil
}

// CountByStatus counts jobs by status. Every status of the check constraint
// is present, zero or not. It reads the whole table: for reports, not for
// loops.
func CountByStatus(ctx context.Context, q DBTX) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT status, count(*) FROM jobs GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count jobs by status: %w", err)
	}
	defer rows.Close()
	counts := make(map[string]int64)
	for _, s := range AllStatuses() {
		counts[s] = 0
	}
	for rows.Next() {
		var status string
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("count jobs by status: %w", err)
		}
		counts[status] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs by status: %w", err)
	}
	return counts, nil
}
