// Package retry sends failed jobs back to pending_review, their dead letters
// with them: what `jobrelay retry --failed` and the dashboard's retry
// buttons do, in one place.
package retry

import (
	"context"
	"fmt"
	"strings"

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
	return FailedPartitions(ctx, pool, rdb, streamName, 1, jobID)
}

// FailedPartitions is Failed for a pipeline of partitions streams (see
// stream.Partitions): each partition dead-letters its own jobs, and the
// dead letters of streamName itself, from the layout without partitions,
// are removed too. DeadLetterStream lists the streams, comma-separated.
func FailedPartitions(ctx context.Context, pool db.DBTX, rdb redis.Cmdable, streamName string, partitions int, jobID string) (Result, error) {
	streams := stream.Partitions(streamName, partitions)
	if len(streams) > 1 {
		streams = append(streams, streamName)
	}
	keys := make([]string, len(streams))
	for i, s := range streams {
		keys[i] = stream.DeadLetterKey(s)
	}
	res := Result{DeadLetterStream: strings.Join(keys, ", ")}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return res, fmt.Errorf("retry: Redis, which holds the dead letters, is unreachable; nothing changed: %w", err)
	}
	ids, err := db.RetryFailedJobs(ctx, pool, jobID)
	if err != nil {
		return res, err
	}
	res.JobIDs = ids
	for i, s := range streams {
		n, err := stream.DeleteDeadLetters(ctx, rdb, s, ids)
		res.DeadLettersRemoved += n
		if err != nil {
			return res, &DeadLettersLeftError{Key: keys[i], Err: err}
		}
	}
	return res, nil
}
