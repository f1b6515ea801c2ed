package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/relay"
)

// consumerLimitBatch is the XREADGROUP COUNT of the consumers' limit.
const consumerLimitBatch = 100

// publishedPipeline is a pipeline whose n jobs the relay has published
// already (in_review, one entry each), vacuumed: what the consumers start
// from. The consumer group exists before the entries, as it does in
// service: a group created after its entries would have the consumers
// check each job's status first (they may be reviewed already).
func (b *bench) publishedPipeline(ctx context.Context, n int) (*pipeline, error) {
	p, err := b.newPipeline(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := b.rdb.XGroupCreateMkStream(ctx, p.stream, consumer.GroupDefault, "0").Err(); err != nil {
		p.drop()
		return nil, err
	}
	r, err := relay.New(p.pool, b.rdb, relay.Config{Stream: p.stream, BatchSize: 1000, MaxStreamLag: -1, MaxMemoryRatio: -1})
	if err != nil {
		p.drop()
		return nil, err
	}
	if _, err := r.Drain(ctx); err != nil {
		p.drop()
		return nil, err
	}
	if _, err := p.pool.Exec(ctx, "VACUUM ANALYZE jobs"); err != nil {
		p.drop()
		return nil, err
	}
	return p, nil
}

// markReviewedLimitSQL is the simplest way to record a batch of successes
// on the project's schema.
const markReviewedLimitSQL = `UPDATE jobs SET status = 'reviewed', updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'in_review'`

// consumerLimit is the consumers' limit: the simplest consumer loop on the
// project's schema, one goroutine per connection, each running XREADGROUP
// COUNT 100, one UPDATE of the batch's jobs (autocommit) and one XACK, until
// the stream has nothing new. No handler, no bookkeeping: what a consumer
// can at best approach.
func (b *bench) consumerLimit(ctx context.Context, conns int) (float64, error) {
	p, err := b.publishedPipeline(ctx, b.o.jobs)
	if err != nil {
		return 0, err
	}
	defer p.drop()
	pgConns, closeAll, err := p.connect(ctx, conns)
	if err != nil {
		return 0, err
	}
	defer closeAll()
	elapsed, err := eachConn(pgConns, func(i int, conn *pgx.Conn) error {
		return b.consumerLoop(ctx, conn, p.stream, fmt.Sprintf("limit-%d", i))
	})
	if err != nil {
		return 0, err
	}
	return float64(b.o.jobs) / elapsed.Seconds(), p.check(ctx, db.StatusReviewed, b.o.jobs)
}

// consumerLoop is one connection of consumerLimit.
func (b *bench) consumerLoop(ctx context.Context, conn *pgx.Conn, key, name string) error {
	ids := make([]string, 0, consumerLimitBatch)
	acks := make([]string, 0, consumerLimitBatch)
	for {
		res, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: consumer.GroupDefault, Consumer: name,
			Streams: []string{key, ">"}, Count: consumerLimitBatch, Block: -1}).Result()
		if errors.Is(err, redis.Nil) || (err == nil && len(res[0].Messages) == 0) {
			return nil
		}
		if err != nil {
			return err
		}
		ids, acks = ids[:0], acks[:0]
		for _, m := range res[0].Messages {
			id, _ := m.Values[stream.FieldJobID].(string)
			ids = append(ids, id)
			acks = append(acks, m.ID)
		}
		if _, err := conn.Exec(ctx, markReviewedLimitSQL, ids); err != nil {
			return fmt.Errorf("mark reviewed: %w", err)
		}
		if err := b.rdb.XAck(ctx, key, consumer.GroupDefault, acks...).Err(); err != nil {
			return err
		}
	}
}
