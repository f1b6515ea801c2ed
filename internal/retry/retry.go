// Package retry sends failed jobs back to pending_review, their dead letters
// with them: what `jobrelay retry --failed` and the dashboard's retry
// buttons do, in one place.
package retry

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Result is what Failed did.
type Result struct {
	// JobIDs are the jobs sent back to pending_review.
	JobIDs []string
	// DeadLetterStream is the stream their dead letters were removed from.
	DeadLetterStream string
	// DeadLettersRemoved counts the dead letters removed.
	DeadLettersRemoved int64
}

// DeadLettersLeftError is Failed's error when the jobs were sent back but
// their dead letters could not be removed: the Result's JobIDs did change.
type DeadLettersLeftError struct {
	Key string // the dead-letter stream
	Err error
}

func (e *DeadLettersLeftError) Error() string {
	return fmt.Sprintf("retry: the jobs were sent back, but removing their dead letters from %s failed (remove them with redis-cli XDEL %s <ID>): %v",
		e.Key, e.Key, e.Err)
}

func (e *DeadLettersLeftError) Unwrap() error { return e.Err }

// Failed sends the failed jobs back to pending_review, so the relay publishes
// them again as a new attempt: all of them when jobID is empty, else only
// that one (db.ErrNotFound if it names no failed job). Their attempts count
// is kept and last_error cleared. Then it removes their entries from the
// dead-letter stream of streamName, which so holds only the jobs still
// failed; malformed entries, which name no job, stay.
//
// Redis is checked first: jobs sent back while their dead letters cannot be
// removed would leave dead letters nobody can retry. If Redis fails after
// the jobs were sent back, the error is a *DeadLettersLeftError.
func Failed(ctx context.Context, pool db.DBTX, rdb redis.Cmdable, streamName, jobID string) (Result, error) {
	res := Result{DeadLetterStream: stream.DeadLetterKey(streamName)}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return res, fmt.Errorf("retry: Redis, which holds the dead letters, is unreachable; nothing changed: %w", err)
	}
	ids, err := db.RetryFailedJobs(ctx, pool, jobID)
	if err != nil {
		return res, err
	}
	res.JobIDs = ids
	n, err := stream.DeleteDeadLetters(ctx, rdb, streamName, ids)
	res.DeadLettersRemoved = n
	if err != nil {
		return res, &DeadLettersLeftError{Key: res.DeadLetterStream, Err: err}
	}
	return res, nil
}
