package main

import "github.com/jobrelay/jobrelay/consumer"

const consumeHelp = `Runs a consumer of the review group: reads jobs from the stream, runs the
review handler, marks each job reviewed, then acknowledges it. A failed job
is retried after RECLAIM_IDLE, by any consumer; after MAX_DELIVERIES it goes
to the dead-letter stream "{<stream>}:dead" and the job is marked failed.

Handlers (--handler or HANDLER):
  log          log each job and succeed (the default)
  exec:CMD     run CMD through sh with the job as JSON on stdin; exit 0 is
               success, the tail of stderr becomes last_error
  http:URL     POST the job as JSON to URL; a 2xx status is success

The job JSON has job_id, site, title, company, job_url, attempt, task_id,
enqueued_at and delivery.

SIGTERM stops reading and lets handlers in flight finish for up to
SHUTDOWN_TIMEOUT; a second signal, 1s+ later, stops at once. Unfinished jobs stay pending
for the other consumers.`

func newConsumeCommand() command {
	return &pipelineCmd{name: "consume", synopsis: "jobrelay consume [--handler log|exec:CMD|http:URL] [flags]", help: consumeHelp,
		consumer: &consumer.Config{}}
}
