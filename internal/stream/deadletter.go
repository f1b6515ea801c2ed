package stream

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// deadLetterPage is how many dead letters one XRANGE reads.
const deadLetterPage = 1000

// DeleteDeadLetters removes from the dead-letter stream of stream the
// entries of the given jobs (by their job_id field) and returns how many it
// removed. Dead letters follow their jobs: once a job is retried, or
// reviewed after all, its dead letters say nothing true any more. It reads
// the dead-letter stream in pages, so its cost grows with the number of
// dead letters, which stays small while they are taken care of; it is for
// the rare cases above, not for every job. Entries that name no job
// (malformed) stay, for an operator to remove (XDEL).
func DeleteDeadLetters(ctx context.Context, rdb redis.Cmdable, stream string, jobIDs []string) (int64, error) {
	if len(jobIDs) == 0 {
		return 0, nil
	}
	want := make(map[string]struct{}, len(jobIDs))
	for _, id := range jobIDs {
		want[id] = struct{}{}
	}
	key := DeadLetterKey(stream)
	var removed int64
	for start := "-"; ; {
		msgs, err := rdb.XRangeN(ctx, key, start, "+", deadLetterPage).Result()
		if err != nil {
			return removed, fmt.Errorf("read dead letters of %s: %w", stream, err)
		}
		var del []string
		for _, m := range msgs {
			if id, _ := m.Values[FieldJobID].(string); id != "" {
				if _, ok := want[id]; ok {
					del = append(del, m.ID)
				}
			}
		}
		if len(del) > 0 {
			n, err := rdb.XDel(ctx, key, del...).Result()
			if err != nil {
				return removed, fmt.Errorf("delete dead letters of %s: %w", stream, err)
			}
			removed += n
		}
		if len(msgs) < deadLetterPage {
			return removed, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
