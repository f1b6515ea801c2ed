package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/relay"
)

const runHelp = `Runs the whole pipeline in one process, the default on one machine: applies
the migrations, then runs a relay and a consumer side by side until SIGINT
or SIGTERM. It takes the settings of both "jobrelay relay" and
"jobrelay consume".`

func runCmd(a *app, args []string) error {
	var (
		common commonConfig
		rc     relayConfig
		cc     consumerConfig
		sc     serveConfig
	)
	s := newSettings("run", a.env)
	common.register(s)
	rc.register(s)
	cc.register(s, false)
	sc.register(s)
	if _, err := a.parseOrHelp(s, args, "jobrelay run [flags]", runHelp); err != nil {
		return err
	}
	cc.Group = rc.Group
	logger := a.logger(common.LogFormat, common.LogLevel)
	handler, err := consumer.ParseHandler(cc.Handler, logger)
	if err != nil {
		return usagef("HANDLER: %v", err)
	}
	cl, err := openClients(a.ctx, &common, int32(min(cc.Concurrency, 8)+4))
	if err != nil {
		return err
	}
	defer cl.Close()

	obs := newObservability()
	rcfg := rc.config(common.Stream, logger)
	rcfg.Registerer = obs.reg
	r, err := relay.New(cl.pool, cl.rdb, rcfg)
	if err != nil {
		return usagef("%v", err)
	}
	ccfg := cc.config(common.Stream, handler, logger)
	ccfg.Registerer = obs.reg
	c, err := consumer.New(cl.pool, cl.rdb, ccfg)
	if err != nil {
		return usagef("%v", err)
	}
	obs.ready("recorder", func(context.Context) error { return c.Ready() })
	logStart(a.ctx, logger, "run", &common, append(relayAttrs(&rc, false), consumerAttrs(&cc, c.Name())...)...)

	if !waitForPostgres(a.ctx, logger, cl.pool) {
		return nil
	}
	if err := migrateUp(a.ctx, cl, logger); err != nil {
		return err
	}
	logPublishPath(a.ctx, logger, cl)

	wait, err := obs.start(a.ctx, cl, &sc, common.Stream, logger, r)
	if err != nil {
		return err
	}
	defer wait()
	stopAbort := abortOn(a.abort, c.Abort)
	defer stopAbort()

	var wg sync.WaitGroup
	var relayErr, consumerErr error
	wg.Go(func() { relayErr = r.Run(a.ctx) })
	wg.Go(func() { consumerErr = c.Run(a.ctx) })
	wg.Wait()
	if relayErr != nil {
		return relayErr
	}
	return consumerErr
}

// migrateUp applies the pending migrations and logs what it applied.
func migrateUp(ctx context.Context, cl *clients, logger *slog.Logger) error {
	m, err := db.NewMigrator(ctx, cl.pool, logger)
	if err != nil {
		return err
	}
	defer m.Close()
	res, err := m.Up(ctx)
	if err != nil {
		return err
	}
	v, err := m.GetDBVersion(ctx)
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "jobrelay: database schema is up to date", slog.Int("applied", len(res)), slog.Int64("version", v))
	return nil
}
