package inspect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/internal/stream"
)

// DeadLetter is an entry of the dead-letter stream: a job the consumers gave
// up on, with why.
type DeadLetter struct {
	// ID is the dead letter's own entry ID.
	ID string `json:"id"`
	// JobID is the job it names; empty for a malformed entry.
	JobID string `json:"job_id"`
	Title string `json:"title,omitempty"`
	// TaskID is the review stream's entry that was dead-lettered.
	TaskID string `json:"task_id,omitempty"`
	// Attempt is the job's publish attempt that entry carried.
	Attempt string `json:"attempt,omitempty"`
	// Error is the last handler error.
	Error string `json:"error"`
	// Deliveries is how many times the entry was delivered (0 if unknown).
	Deliveries int64 `json:"deliveries"`
	// DeadAt is when it was dead-lettered: the dead_at field, or else the
	// time in its entry ID.
	DeadAt time.Time `json:"dead_at"`
	// Consumer is the consumer that dead-lettered it.
	Consumer string `json:"consumer,omitempty"`
}

// ReadDeadLetters returns the newest limit dead letters of the pipeline's
// stream (default name if empty), newest first: one XREVRANGE.
func ReadDeadLetters(ctx context.Context, rdb redis.Cmdable, streamName string, limit int64) ([]DeadLetter, error) {
	key := stream.DeadLetterKey(cmp.Or(streamName, streamDefault))
	msgs, err := rdb.XRevRangeN(ctx, key, "+", "-", limit).Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters of %s: %w", key, err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, parseDeadLetter(m))
	}
	return out, nil
}

// ReadPartitionDeadLetters is ReadDeadLetters for a pipeline of partitions
// streams (see Options.Partitions): the newest limit dead letters of every
// partition's dead-letter stream, and of streamName's own (left from the
// layout without partitions, and retried with the others), newest first.
// It reads them in one pipelined round trip of an XREVRANGE per stream.
func ReadPartitionDeadLetters(ctx context.Context, rdb redis.Cmdable, streamName string, partitions int, limit int64) ([]DeadLetter, error) {
	streamName = cmp.Or(streamName, streamDefault)
	names := stream.Partitions(streamName, partitions)
	if len(names) == 1 {
		return ReadDeadLetters(ctx, rdb, streamName, limit)
	}
	names = append(names, streamName)
	cmds := make([]*redis.XMessageSliceCmd, len(names))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			cmds[i] = p.XRevRangeN(ctx, stream.DeadLetterKey(name), "+", "-", limit)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters of %s: %w", stream.DeadLetterKey(streamName+":<k>"), err)
	}
	var out []DeadLetter
	for _, c := range cmds {
		for _, m := range c.Val() {
			out = append(out, parseDeadLetter(m))
		}
	}
	slices.SortStableFunc(out, func(a, b DeadLetter) int { return -compareIDs(a.ID, b.ID) })
	return out[:min(int64(len(out)), max(limit, 0))], nil
}

// compareIDs orders entry IDs (of different streams) by when they were
// added.
func compareIDs(a, b string) int {
	x, _ := stream.ParseID(a)
	y, _ := stream.ParseID(b)
	switch {
	case x.Less(y):
		return -1
	case y.Less(x):
		return 1
	default:
		return 0
	}
}

// deadLetterPage is how many dead letters one XRANGE of FindDeadLetters
// reads.
const deadLetterPage = 1000

// FindDeadLetters returns the dead letters of one job, oldest first. It reads
// the dead-letter stream in pages, so its cost grows with the number of dead
// letters, which stays small while they are taken care of: it is for an
// operator looking at one job, not for loops.
func FindDeadLetters(ctx context.Context, rdb redis.Cmdable, streamName, jobID string) ([]DeadLetter, error) {
	key := stream.DeadLetterKey(cmp.Or(streamName, streamDefault))
	var out []DeadLetter
	for start := "-"; ; {
		msgs, err := rdb.XRangeN(ctx, key, start, "+", deadLetterPage).Result()
		if err != nil {
			return nil, fmt.Errorf("read dead letters of %s: %w", key, err)
		}
		for _, m := range msgs {
			if id, _ := m.Values[stream.FieldJobID].(string); id == jobID {
				out = append(out, parseDeadLetter(m))
			}
		}
		if len(msgs) < deadLetterPage {
			return out, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

func parseDeadLetter(m redis.XMessage) DeadLetter {
	field := func(name string) string {
		v, _ := m.Values[name].(string)
		return v
	}
	d := DeadLetter{
		ID:       m.ID,
		JobID:    field(stream.FieldJobID),
		Title:    field(stream.FieldTitle),
		TaskID:   field(stream.FieldTaskID),
		Attempt:  field(stream.FieldAttempt),
		Error:    field(stream.FieldError),
		Consumer: field(stream.FieldConsumer),
	}
	d.Deliveries, _ = strconv.ParseInt(field(stream.FieldDeliveries), 10, 64)
	if t, err := time.Parse(time.RFC3339Nano, field(stream.FieldDeadAt)); err == nil {
		d.DeadAt = t
	} else {
		d.DeadAt = idTime(m.ID)
	}
	return d
}

// idTime is when an entry was added, from its ID; zero if it cannot tell.
func idTime(id string) time.Time {
	parsed, ok := stream.ParseID(id)
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(int64(parsed.MS))
}
