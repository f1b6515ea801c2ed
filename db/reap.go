package db

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// Published is an in_review job and the stream entry it was published as.
type Published struct {
	ID         string
	StreamID   string
	EnqueuedAt time.Time
}

// PublishedBefore lists in_review jobs published before the given time, in
// (enqueued_at, id) order after the cursor (zero value: from the start), at
// most limit of them. It reads the partial index on in_review rows.
func PublishedBefore(ctx context.Context, q DBTX, before time.Time, after Published, limit int) ([]Published, error) {
	rows, err := q.Query(ctx, `
SELECT id::text, stream_id, enqueued_at
FROM jobs
WHERE status = 'in_review' AND enqueued_at < $1
  AND (enqueued_at, id) > ($2, $3::uuid)
ORDER BY enqueued_at, id
LIMIT $4`, before, after.EnqueuedAt, cmp.Or(after.ID, "00000000-0000-0000-0000-000000000000"), limit)
	if err != nil {
		return nil, fmt.Errorf("list in_review jobs: %w", err)
	}
	defer rows.Close()
	var out []Published
	for rows.Next() {
		var p Published
		var streamID *string
		if err := rows.Scan(&p.ID, &streamID, &p.EnqueuedAt); err != nil {
			return nil, fmt.Errorf("list in_review jobs: %w", err)
		}
		if streamID != nil {
			p.StreamID = *streamID
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list in_review jobs: %w", err)
	}
	return out, nil
}

// Reenqueue sends in_review jobs whose stream entry was lost back to
// pending_review. It is a compare-and-set on status and stream_id, so a job
// that was reviewed, or published again, since it was listed is left alone,
// and any number of relays may reap at once. The next claim counts the new
// attempt. It returns how many jobs changed.
func Reenqueue(ctx context.Context, q DBTX, lost []Published) (int64, error) {
	ids := make([]string, len(lost))
	streamIDs := make([]string, len(lost))
	for i, p := range lost {
		ids[i], streamIDs[i] = p.ID, p.StreamID
	}
	tag, err := q.Exec(ctx, `
UPDATE jobs
SET status = 'pending_review', updated_at = now(),
    last_error = 'stream entry ' || coalesce(NULLIF(b.stream_id, ''), '(none)') || ' was lost before it was acknowledged; re-enqueued'
FROM unnest($1::uuid[], $2::text[]) AS b(id, stream_id)
WHERE jobs.id = b.id AND jobs.status = 'in_review' AND jobs.stream_id IS NOT DISTINCT FROM NULLIF(b.stream_id, '')`,
		ids, streamIDs)
	if err != nil {
		return 0, fmt.Errorf("re-enqueue lost jobs: %w", err)
	}
	return tag.RowsAffected(), nil
}
