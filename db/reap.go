package db

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// InReviewJob is an in_review job and the stream entry it was published as.
type InReviewJob struct {
	ID string
	// StreamID is the entry's ID; "" when the row has none (a row jobrelay
	// did not publish: see PublishedBefore).
	StreamID string
	// EnqueuedAt is when the relay published it; zero when the row has no
	// enqueued_at.
	EnqueuedAt time.Time
}

// publishedBeforeSQL lists the reaper's candidates in two parts, both read
// from the partial index on in_review rows by enqueued_at:
//
//   - rows without enqueued_at (the old poller's leftovers, rows the
//     application inserted as in_review, rows whose bookkeeping a migrate
//     down and up reset), by id, counting their age from updated_at, the
//     best record of when they became in_review. They come first, and only
//     while the cursor is still among them ($2 NULL). ORDER BY enqueued_at,
//     id rather than id alone keeps the plan on that index: by id alone the
//     planner may walk the primary key through the whole table, as it
//     cannot tell how few in_review rows lack enqueued_at;
//   - rows published before $1, in (enqueued_at, id) order after the cursor
//     (from the start while the cursor is still among the first part).
//
// Only rows of the reaper's stream ($5) or of no recorded stream are
// listed: jobs another deployment published to its own stream are its
// reaper's business. The outer ORDER BY puts the two parts in cursor order.
const publishedBeforeSQL = `
SELECT j.id::text, j.stream_id, j.enqueued_at FROM (
  (SELECT id, stream_id, enqueued_at FROM jobs
   WHERE status = 'in_review' AND enqueued_at IS NULL AND updated_at < $1
     AND $2::timestamptz IS NULL AND id > $3::uuid
     AND (stream = $5 OR (stream IS NULL AND NOT $6))
   ORDER BY enqueued_at, id
   LIMIT $4)
  UNION ALL
  (SELECT id, stream_id, enqueued_at FROM jobs
   WHERE status = 'in_review' AND enqueued_at < $1
     AND (enqueued_at, id) > (coalesce($2::timestamptz, '-infinity'), $3::uuid)
     AND (stream = $5 OR (stream IS NULL AND NOT $6))
   ORDER BY enqueued_at, id
   LIMIT $4)
) j
ORDER BY j.enqueued_at NULLS FIRST, j.id
LIMIT $4`

// PublishedBeforeParams selects the reaper's candidates for PublishedBefore.
type PublishedBeforeParams struct {
	// Before is the time a job must have been published before (by
	// enqueued_at; by updated_at for rows without one).
	Before time.Time
	// Stream is the reaper's stream: rows recorded as published to another
	// stream are skipped. Rows with no stream recorded are listed, unless
	// WithoutStream is set.
	Stream string
	// WithoutStream leaves out the rows with no stream recorded: they
	// belong to the pipeline's base stream, not to its partitions.
	WithoutStream bool
	// After is the cursor: the last job of the previous page, or the zero
	// value to start from the beginning.
	After InReviewJob
	// Limit is the most jobs listed.
	Limit int
}

// PublishedBefore lists in_review jobs published before p.Before, rows
// without bookkeeping first (by id), then in (enqueued_at, id) order, after
// the cursor, at most p.Limit of them. It reads the partial index on
// in_review rows.
func PublishedBefore(ctx context.Context, q DBTX, p *PublishedBeforeParams) ([]InReviewJob, error) {
	var after *time.Time
	if !p.After.EnqueuedAt.IsZero() {
		after = &p.After.EnqueuedAt
	}
	rows, err := q.Query(ctx, publishedBeforeSQL, p.Before, after,
		cmp.Or(p.After.ID, "00000000-0000-0000-0000-000000000000"), p.Limit, p.Stream, p.WithoutStream)
	if err != nil {
		return nil, fmt.Errorf("list in_review jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (InReviewJob, error) {
		var p InReviewJob
		var streamID *string
		var enqueuedAt *time.Time
		if err := row.Scan(&p.ID, &streamID, &enqueuedAt); err != nil {
			return p, err
		}
		if streamID != nil {
			p.StreamID = *streamID
		}
		if enqueuedAt != nil {
			p.EnqueuedAt = *enqueuedAt
		}
		return p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list in_review jobs: %w", err)
	}
	return out, nil
}

// Reenqueue sends in_review jobs whose stream entry was lost, or that never
// had one, back to pending_review. It is a compare-and-set on status and
// stream_id, so a job that was reviewed, or published again, since it was
// listed is left alone, and any number of relays may reap at once. The next
// claim counts the new attempt. It returns the IDs of the jobs it changed,
// and only those.
func Reenqueue(ctx context.Context, q DBTX, lost []InReviewJob) ([]string, error) {
	if len(lost) == 0 {
		return nil, nil
	}
	ids := make([]string, len(lost))
	streamIDs := make([]string, len(lost))
	for i, p := range lost {
		ids[i], streamIDs[i] = p.ID, p.StreamID
	}
	bin, err := uuids(ids)
	if err != nil {
		return nil, fmt.Errorf("re-enqueue lost jobs: %w", err)
	}
	rows, err := q.Query(ctx, `
UPDATE jobs
SET status = 'pending_review', updated_at = now(),
    last_error = CASE
      WHEN jobs.stream_id IS NULL THEN
        'in_review without a stream entry recorded (left by another publisher, or by a migration); re-enqueued'
      ELSE 'stream entry ' || jobs.stream_id || ' was lost before it was acknowledged; re-enqueued'
    END
FROM unnest($1::uuid[], $2::text[]) AS b(id, stream_id)
WHERE jobs.id = b.id AND jobs.status = 'in_review' AND jobs.stream_id IS NOT DISTINCT FROM NULLIF(b.stream_id, '')
RETURNING jobs.id::text`,
		bin, streamIDs)
	if err != nil {
		return nil, fmt.Errorf("re-enqueue lost jobs: %w", err)
	}
	changed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("re-enqueue lost jobs: %w", err)
	}
	return changed, nil
}

// CountInReviewByStream counts in_review jobs by the stream they were
// published to; "" counts the rows with no stream recorded. It reads every
// in_review row: for reports, not for loops.
func CountInReviewByStream(ctx context.Context, q DBTX) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT coalesce(stream, ''), count(*) FROM jobs WHERE status = 'in_review' GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("count in_review jobs by stream: %w", err)
	}
	out := map[string]int64{}
	var stream string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&stream, &n}, func() error {
		out[stream] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count in_review jobs by stream: %w", err)
	}
	return out, nil
}
