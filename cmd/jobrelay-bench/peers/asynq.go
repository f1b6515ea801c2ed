package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// asynqTask is the type of the asynq tasks.
const asynqTask = "job:review"

// asynqConcurrency is each server's concurrency: jobrelay's default
// CONCURRENCY.
const asynqConcurrency = 8

// enqueue enqueues one task per pending job, one EnqueueContext each (asynq
// has no batch enqueue), into the queue named after the stream.
func (e *env) enqueue(ctx context.Context, jobs []pendingJob) error {
	client := asynq.NewClientFromRedisClient(e.rdb)
	for _, j := range jobs {
		payload, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(asynqTask, payload), asynq.Queue(e.stream), asynq.MaxRetry(5)); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// deleteQueue removes the run's queue.
func (e *env) deleteQueue() {
	_ = asynq.NewInspectorFromRedisClient(e.rdb).DeleteQueue(e.stream, true)
}

// asynqEnqueue measures enqueueing the pending jobs as asynq tasks: what
// the application would do instead of inserting rows for a relay, without
// a transaction shared with its database.
func (e *env) asynqEnqueue(ctx context.Context) (float64, error) {
	jobs, err := e.pendingJobs(ctx)
	if err != nil {
		return 0, err
	}
	defer e.deleteQueue()
	start := time.Now()
	if err := e.enqueue(ctx, jobs); err != nil {
		return 0, err
	}
	return float64(e.jobs) / time.Since(start).Seconds(), nil
}

// asynqProcess processes tasks enqueued beforehand (untimed), one per job,
// with e.workers asynq servers of concurrency 8, whose handler records the
// job as reviewed with one UPDATE, as jobrelay's consumers do.
func (e *env) asynqProcess(ctx context.Context) (float64, error) {
	jobs, err := e.pendingJobs(ctx)
	if err != nil {
		return 0, err
	}
	defer e.deleteQueue()
	if err := e.enqueue(ctx, jobs); err != nil {
		return 0, err
	}
	if err := e.markInReview(ctx); err != nil {
		return 0, err
	}
	var handled atomic.Int64
	allDone := make(chan struct{})
	handler := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var j pendingJob
		if err := json.Unmarshal(t.Payload(), &j); err != nil {
			return err
		}
		if _, err := e.pool.Exec(ctx, markReviewedSQL, j.ID); err != nil {
			return fmt.Errorf("mark reviewed: %w", err)
		}
		if handled.Add(1) == int64(e.jobs) {
			close(allDone)
		}
		return nil
	})
	servers := make([]*asynq.Server, e.workers)
	start := time.Now()
	for i := range servers {
		servers[i] = asynq.NewServerFromRedisClient(e.rdb, asynq.Config{Concurrency: asynqConcurrency,
			Queues: map[string]int{e.stream: 1}, LogLevel: asynq.FatalLevel})
		if err := servers[i].Start(handler); err != nil {
			return 0, fmt.Errorf("asynq server: %w", err)
		}
	}
	select {
	case <-allDone:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// Done once asynq has marked the last task completed.
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	err = waitFor(ctx, func() (bool, error) {
		q, err := insp.GetQueueInfo(e.stream)
		return err == nil && q.Active == 0 && q.Pending == 0, err
	})
	elapsed := time.Since(start)
	for _, s := range servers {
		s.Shutdown()
	}
	if err != nil {
		return 0, err
	}
	return float64(e.jobs) / elapsed.Seconds(), e.checkReviewed(ctx)
}
