package inspect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// JobLife is everything the pipeline knows of one job: its row, the entry
// of its latest attempt in the stream, that entry's deliveries still
// pending in each group, and its dead letters.
type JobLife struct {
	TakenAt time.Time
	Row     db.JobRow
	// Stream is the stream the job was last published to: its stream
	// column, or the pipeline's stream when none is recorded.
	Stream string
	// Entry is the stream entry of the latest attempt; nil when the job
	// has none recorded, or the entry is gone (acknowledged and trimmed,
	// or lost).
	Entry *Entry
	// Deliveries are the groups' pending deliveries of Entry: delivered,
	// not yet acknowledged.
	Deliveries []Delivery
	// DeadLetters are the job's dead letters, oldest first.
	DeadLetters []DeadLetter
}

// Entry is a stream entry with its fields, in the order of the entry
// format (job_id, site, title, ...), other fields after them by name.
type Entry struct {
	ID     string
	Fields []Field
}

// Field is a field of a stream entry.
type Field struct{ Name, Value string }

// Delivery is a pending delivery of an entry to a group's consumer.
type Delivery struct {
	Group    string
	Consumer string
	// Idle is the time since it was last delivered (or its claim was
	// refreshed).
	Idle time.Duration
	// Count is its delivery counter, the one MAX_DELIVERIES applies to.
	Count int64
}

// entryOrder is the order of the entry format's fields.
var entryOrder = []string{stream.FieldJobID, stream.FieldSite, stream.FieldTitle, stream.FieldCompany, stream.FieldJobURL,
	stream.FieldAttempt, stream.FieldEnqueuedAt}

// ReadJob reads a job's life: one query by primary key, then a few Redis
// round trips for its entry, its deliveries and its dead letters (see
// FindDeadLetters for their cost): those in the dead-letter stream of the
// stream it was published to (its partition) and of the pipeline's
// stream. It returns db.ErrNotFound when no job has that ID. streamName is
// the pipeline's stream ("job_review" if empty).
func ReadJob(ctx context.Context, pool *pgxpool.Pool, rdb redis.UniversalClient, streamName, id string) (*JobLife, error) {
	row, err := db.GetJob(ctx, pool, id)
	if err != nil {
		return nil, err
	}
	life := &JobLife{TakenAt: time.Now(), Row: row, Stream: cmp.Or(row.Stream.String, streamName, streamDefault)}
	if row.StreamID.Valid {
		if err := readEntry(ctx, rdb, life); err != nil {
			return nil, err
		}
	}
	// Its dead letters are in the dead-letter stream of the stream it was
	// published to (its partition's), or of the pipeline's stream when it
	// was dead-lettered before partitions.
	for _, name := range slices.Compact([]string{life.Stream, cmp.Or(streamName, streamDefault)}) {
		found, err := FindDeadLetters(ctx, rdb, name, row.ID)
		if err != nil {
			return nil, err
		}
		life.DeadLetters = append(life.DeadLetters, found...)
	}
	slices.SortStableFunc(life.DeadLetters, func(a, b DeadLetter) int { return compareIDs(a.ID, b.ID) })
	return life, nil
}

// readEntry reads the entry of the job's latest attempt and its pending
// deliveries.
func readEntry(ctx context.Context, rdb redis.UniversalClient, life *JobLife) error {
	id := life.Row.StreamID.String
	msgs, err := rdb.XRangeN(ctx, life.Stream, id, id, 1).Result()
	if err != nil {
		return fmt.Errorf("read entry %s of %s: %w", id, life.Stream, err)
	}
	if len(msgs) == 1 {
		life.Entry = &Entry{ID: msgs[0].ID, Fields: entryFields(msgs[0].Values)}
	}
	groups, err := rdb.XInfoGroups(ctx, life.Stream).Result()
	if stream.IsNoSuchKey(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read groups of %s: %w", life.Stream, err)
	}
	for _, g := range groups {
		if g.Pending == 0 {
			continue
		}
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: life.Stream, Group: g.Name, Start: id, End: id, Count: 1}).Result()
		if err != nil {
			return fmt.Errorf("read pending deliveries of %s in %s: %w", id, g.Name, err)
		}
		for _, d := range p {
			life.Deliveries = append(life.Deliveries, Delivery{Group: g.Name, Consumer: d.Consumer, Idle: d.Idle, Count: d.RetryCount})
		}
	}
	return nil
}

// entryFields lists an entry's fields in the entry format's order.
func entryFields(values map[string]any) []Field {
	fields := make([]Field, 0, len(values))
	for _, name := range entryOrder {
		if v, ok := values[name]; ok {
			fields = append(fields, Field{name, fmt.Sprint(v)})
		}
	}
	var rest []Field
	for name, v := range values {
		if !slices.Contains(entryOrder, name) {
			rest = append(rest, Field{name, fmt.Sprint(v)})
		}
	}
	slices.SortFunc(rest, func(a, b Field) int { return cmp.Compare(a.Name, b.Name) })
	return append(fields, rest...)
}
