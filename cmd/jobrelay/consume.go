package main

import (
	"context"
	"log/slog"

	"github.com/jobrelay/jobrelay/consumer"
)

const consumeHelp = `Runs a consumer of the review group: reads jobs from the stream, runs the
review handler, marks each job reviewed, then acknowledges it. A failed job
is retried after RECLAIM_IDLE, by any consumer; after MAX_DELIVERIES it goes
to the dead-letter stream "<stream>:dead" and the job is marked failed.

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

func consumeCmd(a *app, args []string) error {
	var (
		common commonConfig
		cc     consumerConfig
		sc     serveConfig
	)
	s := newSettings("consume", a.env)
	common.register(s)
	cc.register(s, true)
	sc.register(s)
	if _, err := a.parseOrHelp(s, args, "jobrelay consume [--handler log|exec:CMD|http:URL] [flags]", consumeHelp); err != nil {
		return err
	}
	logger := a.logger(common.LogFormat, common.LogLevel)
	handler, err := consumer.ParseHandler(cc.Handler, logger)
	if err != nil {
		return usagef("HANDLER: %v", err)
	}
	cl, err := openClients(a.ctx, &common, int32(min(cc.Concurrency, 8)+2))
	if err != nil {
		return err
	}
	defer cl.Close()

	obs := newObservability()
	cfg := cc.config(common.Stream, handler, logger)
	cfg.Registerer = obs.reg
	c, err := consumer.New(cl.pool, cl.rdb, cfg)
	if err != nil {
		return usagef("%v", err)
	}
	obs.ready("recorder", func(context.Context) error { return c.Ready() })
	logStart(a.ctx, logger, "consume", &common, consumerAttrs(&cc, c.Name())...)
	wait, err := obs.start(a.ctx, cl, &sc, common.Stream, logger, nil)
	if err != nil {
		return err
	}
	defer wait()
	stopAbort := abortOn(a.abort, c.Abort)
	defer stopAbort()
	return c.Run(a.ctx)
}

// abortOn calls abort when the second signal comes, until stop is called.
func abortOn(signal <-chan struct{}, abort func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-signal:
			abort()
		case <-done:
		}
	}()
	return func() { close(done) }
}

func consumerAttrs(cc *consumerConfig, name string) []slog.Attr {
	return []slog.Attr{
		slog.String("group", cc.Group),
		slog.String("consumer", name),
		slog.String("handler", consumer.RedactSpec(cc.Handler)), // tokens in the command or URL stay hidden
		slog.Int("concurrency", cc.Concurrency),
		slog.Duration("reclaim_idle", cc.ReclaimIdle),
		slog.Int("max_deliveries", cc.MaxDeliveries),
		slog.Duration("handler_timeout", cc.HandlerTimeout),
		slog.Duration("shutdown_timeout", cc.ShutdownTimeout),
	}
}
