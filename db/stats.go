package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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

// backlogSQL reads the backlog from the partial indexes on pending_review
// and in_review rows.
const backlogSQL = `
SELECT (SELECT count(*) FROM jobs WHERE status = 'pending_review'),
       (SELECT min(created_at) FROM jobs WHERE status = 'pending_review'),
       (SELECT count(*) FROM jobs WHERE status = 'in_review'),
       least((SELECT min(enqueued_at) FROM jobs WHERE status = 'in_review'),
             (SELECT min(updated_at) FROM jobs WHERE status = 'in_review' AND enqueued_at IS NULL)),
       (SELECT count(*) FROM jobs WHERE status = 'in_review' AND (enqueued_at IS NULL OR stream_id IS NULL))`

// ReadBacklog counts pending_review and in_review jobs and finds the oldest
// of each. An in_review row without enqueued_at counts from its updated_at,
// as the reaper does, so none is left out of the oldest age.
func ReadBacklog(ctx context.Context, q DBTX) (Backlog, error) {
	var b Backlog
	var oldestPending, oldestInReview *time.Time
	err := q.QueryRow(ctx, backlogSQL).
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

// JobCounts are jobs by status, for reports.
type JobCounts struct {
	// ByStatus has every status of the check constraint, zero or not.
	ByStatus map[string]int64
	// Estimated lists the statuses whose count is PostgreSQL's estimate
	// rather than a count: reviewed and archived, on a table of
	// EstimateCountsAbove rows or more.
	Estimated []string
}

// EstimateCountsAbove is the table size (as PostgreSQL estimates it) from
// which ReadJobCounts estimates the reviewed and archived counts: counting
// millions of rows takes seconds, and a report needs their order of
// magnitude, not their last digit.
const EstimateCountsAbove = 1_000_000

// jobsLeaves lists the tables that hold the rows of jobs: jobs itself, or
// the leaf partitions of a partitioned jobs (pg_partition_tree lists none
// for a plain table).
const jobsLeaves = `(SELECT oid AS relid FROM pg_class WHERE oid = to_regclass('jobs') AND relkind = 'r'
  UNION ALL
  SELECT relid FROM pg_partition_tree(to_regclass('jobs')) WHERE isleaf)`

// tableRowsSQL is PostgreSQL's estimate of the rows of jobs, summed over
// its partitions when it is partitioned. -1 (never vacuumed or analyzed)
// counts as 0.
const tableRowsSQL = `
SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
FROM ` + jobsLeaves + ` AS p
JOIN pg_class c ON c.oid = p.relid`

// smallCountsSQL counts the statuses that partial indexes hold, exactly
// and cheaply however large the table: pending_review, in_review and
// failed.
const smallCountsSQL = `
SELECT (SELECT count(*) FROM jobs WHERE status = 'pending_review'),
       (SELECT count(*) FROM jobs WHERE status = 'in_review'),
       (SELECT count(*) FROM jobs WHERE status = 'failed')`

// estimatedCountsSQL estimates rows by status from the statistics ANALYZE
// (and autovacuum) keep: each leaf partition's row estimate times the
// frequency of the status among its most common values.
const estimatedCountsSQL = `
SELECT v.status, sum(greatest(c.reltuples, 0) * v.freq)::bigint
FROM ` + jobsLeaves + ` AS p
JOIN pg_class c ON c.oid = p.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'status' AND NOT s.inherited
CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS v(status, freq)
GROUP BY v.status`

// ReadJobCounts counts jobs by status for reports (jobrelay status). Below
// EstimateCountsAbove rows it counts them all; above, it counts the
// statuses partial indexes hold (pending_review, in_review, failed) and
// estimates reviewed and archived from the table's statistics, so that it
// stays fast on a table of millions.
func ReadJobCounts(ctx context.Context, q DBTX) (JobCounts, error) {
	return readJobCounts(ctx, q, EstimateCountsAbove)
}

// readJobCounts is ReadJobCounts estimating from estimateAbove rows.
func readJobCounts(ctx context.Context, q DBTX, estimateAbove int64) (JobCounts, error) {
	var rows int64
	if err := q.QueryRow(ctx, tableRowsSQL).Scan(&rows); err != nil {
		return JobCounts{}, fmt.Errorf("estimate the size of jobs: %w", err)
	}
	if rows < estimateAbove {
		counts, err := CountByStatus(ctx, q)
		return JobCounts{ByStatus: counts}, err
	}
	counts := make(map[string]int64)
	for _, s := range AllStatuses() {
		counts[s] = 0
	}
	var pending, inReview, failed int64
	if err := q.QueryRow(ctx, smallCountsSQL).Scan(&pending, &inReview, &failed); err != nil {
		return JobCounts{}, fmt.Errorf("count jobs by status: %w", err)
	}
	est, err := q.Query(ctx, estimatedCountsSQL)
	if err != nil {
		return JobCounts{}, fmt.Errorf("estimate jobs by status: %w", err)
	}
	var status string
	var n int64
	if _, err := pgx.ForEachRow(est, []any{&status, &n}, func() error {
		if status == StatusReviewed || status == StatusArchived {
			counts[status] = n
		}
		return nil
	}); err != nil {
		return JobCounts{}, fmt.Errorf("estimate jobs by status: %w", err)
	}
	counts[StatusPendingReview], counts[StatusInReview], counts[StatusFailed] = pending, inReview, failed
	return JobCounts{ByStatus: counts, Estimated: []string{StatusReviewed, StatusArchived}}, nil
}
