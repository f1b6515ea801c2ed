package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// outboxTopic is the Forwarder's topic: the SQL table the outbox writes to.
const outboxTopic = "jobrelay_outbox"

// subscriberGroup is the Redis consumer group of the subscribers.
const subscriberGroup = "job_review_workers"

// forwarder drains an outbox of one message per pending job with one
// Watermill Forwarder: a watermill-sql subscriber on the outbox table
// (PostgreSQL schema and offsets adapters, their defaults) and a
// watermill-redisstream publisher to the stream. The outbox is written
// first, untimed, as an application would have in its transactions.
// Watermill knows nothing of the jobs' status: the jobs stay
// pending_review, where jobrelay marks each in_review.
func (e *env) forwarder(ctx context.Context) (float64, error) {
	jobs, err := e.pendingJobs(ctx)
	if err != nil {
		return 0, err
	}
	logger := watermill.NopLogger{}
	db := wsql.BeginnerFromPgx(e.pool)
	schema := wsql.DefaultPostgreSQLSchema{}
	sqlPub, err := wsql.NewPublisher(db, wsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, logger)
	if err != nil {
		return 0, fmt.Errorf("sql publisher: %w", err)
	}
	outbox := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: outboxTopic})
	for done := 0; done < len(jobs); done += 1000 {
		var msgs []*message.Message
		for _, j := range jobs[done:min(done+1000, len(jobs))] {
			payload, err := json.Marshal(j)
			if err != nil {
				return 0, err
			}
			msgs = append(msgs, message.NewMessage(watermill.NewUUID(), payload))
		}
		if err := outbox.Publish(e.stream, msgs...); err != nil {
			return 0, fmt.Errorf("write the outbox: %w", err)
		}
	}
	if _, err := e.pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}

	sqlSub, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{SchemaAdapter: schema,
		OffsetsAdapter: wsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true}, logger)
	if err != nil {
		return 0, fmt.Errorf("sql subscriber: %w", err)
	}
	redisPub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: e.rdb}, logger)
	if err != nil {
		return 0, fmt.Errorf("redis stream publisher: %w", err)
	}
	fwd, err := forwarder.NewForwarder(sqlSub, redisPub, logger, forwarder.Config{ForwarderTopic: outboxTopic})
	if err != nil {
		return 0, fmt.Errorf("forwarder: %w", err)
	}
	start := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- fwd.Run(ctx) }()
	err = waitFor(ctx, func() (bool, error) {
		select {
		case err := <-runErr:
			return false, fmt.Errorf("forwarder stopped: %w", err)
		default:
		}
		n, err := e.rdb.XLen(ctx, e.stream).Result()
		return n >= int64(e.jobs), err
	})
	elapsed := time.Since(start)
	_ = fwd.Close()
	if err != nil {
		return 0, err
	}
	n, err := e.rdb.XLen(ctx, e.stream).Result()
	if err != nil {
		return 0, fmt.Errorf("forwarder: count the entries: %w", err)
	}
	if n != int64(e.jobs) {
		return 0, fmt.Errorf("forwarder: %d entries for %d jobs", n, e.jobs)
	}
	return float64(e.jobs) / elapsed.Seconds(), nil
}

// subscriber reviews the jobs with e.workers watermill-redisstream
// subscribers in one consumer group, each handling its messages one by one
// as Watermill delivers them: one UPDATE to mark the job reviewed, then
// Ack (XACK). The stream is filled first, untimed, with one message per
// job in Watermill's format, and the jobs made in_review.
func (e *env) subscriber(ctx context.Context) (float64, error) {
	jobs, err := e.pendingJobs(ctx)
	if err != nil {
		return 0, err
	}
	var m redisstream.DefaultMarshallerUnmarshaller
	for done := 0; done < len(jobs); done += 1000 {
		_, err := e.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, j := range jobs[done:min(done+1000, len(jobs))] {
				payload, err := json.Marshal(j)
				if err != nil {
					return err
				}
				values, err := m.Marshal(e.stream, message.NewMessage(watermill.NewUUID(), payload))
				if err != nil {
					return err
				}
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: e.stream, Values: values})
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("fill the stream: %w", err)
		}
	}
	if err := e.markInReview(ctx); err != nil {
		return 0, err
	}

	var handled atomic.Int64
	allDone := make(chan struct{})
	errs := make(chan error, e.workers)
	var wg sync.WaitGroup
	subs := make([]*redisstream.Subscriber, e.workers)
	start := time.Now()
	for i := range subs {
		subs[i], err = redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: e.rdb, ConsumerGroup: subscriberGroup,
			Consumer: fmt.Sprintf("watermill-%d", i)}, watermill.NopLogger{})
		if err != nil {
			return 0, fmt.Errorf("redis stream subscriber: %w", err)
		}
		msgs, err := subs[i].Subscribe(ctx, e.stream)
		if err != nil {
			return 0, fmt.Errorf("subscribe: %w", err)
		}
		wg.Go(func() {
			for msg := range msgs {
				var j pendingJob
				if err := json.Unmarshal(msg.Payload, &j); err != nil {
					errs <- err
					return
				}
				if _, err := e.pool.Exec(ctx, markReviewedSQL, j.ID); err != nil {
					errs <- fmt.Errorf("mark reviewed: %w", err)
					return
				}
				msg.Ack()
				if handled.Add(1) == int64(e.jobs) {
					close(allDone)
				}
			}
		})
	}
	select {
	case <-allDone:
	case err := <-errs:
		return 0, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// The last Ack's XACK is sent by the subscriber after Ack returns.
	err = waitFor(ctx, func() (bool, error) {
		p, err := e.rdb.XPending(ctx, e.stream, subscriberGroup).Result()
		return err == nil && p.Count == 0, err
	})
	elapsed := time.Since(start)
	for _, s := range subs {
		_ = s.Close()
	}
	if err != nil {
		return 0, err
	}
	return float64(e.jobs) / elapsed.Seconds(), e.checkReviewed(ctx)
}
