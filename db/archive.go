package db

import (
	"context"
	"fmt"
	"time"
)

// archiveSQL moves up to $2 reviewed jobs last updated (reviewed) before
// $1 to archived, oldest first, in one short statement. It reads the
// partial index on reviewed rows by updated_at, so each batch costs the
// same however many jobs the table holds, and archived rows leave that
// index. SKIP LOCKED passes over rows another transaction holds (a late
// success being recorded, another archiver): they are archived by a later
// batch. The status guard in the UPDATE re-checks a row changed between
// the two steps. The IDs go to the UPDATE as an array, which it looks up
// in the primary key: a join would let the planner hash the batch and read
// the whole table.
const archiveSQL = `
WITH batch AS (
  SELECT id FROM jobs
  WHERE status = 'reviewed' AND updated_at < $1
  ORDER BY updated_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED)
UPDATE jobs SET status = 'archived', updated_at = now()
WHERE id = ANY(ARRAY(SELECT id FROM batch)) AND status = 'reviewed'`

// ArchiveReviewedBatch moves up to limit jobs reviewed before before (by
// updated_at, when they became reviewed) to archived, in one statement
// (its own transaction when q is a pool), and returns how many it moved.
// A batch shorter than limit means none is left, but for rows other
// transactions held.
func ArchiveReviewedBatch(ctx context.Context, q DBTX, before time.Time, limit int) (int64, error) {
	ct, err := q.Exec(ctx, archiveSQL, before, limit)
	if err != nil {
		return 0, fmt.Errorf("archive reviewed jobs: %w", err)
	}
	return ct.RowsAffected(), nil
}
