package main

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jobrelay/jobrelay/relay"
)

const relayHelp = `Publishes pending_review jobs to the Redis stream, in batches: each cycle
claims up to BATCH_SIZE jobs (SELECT … FOR UPDATE SKIP LOCKED), adds them to
the stream in one round trip, at most once per job and attempt, and commits
them in_review with their entry IDs. Any number of relays run side by side.

It wakes at once on new jobs (LISTEN/NOTIFY), polls every POLL_INTERVAL as a
safety net, holds back while consumers lag by more than MAX_STREAM_LAG, and
sends back to pending_review the in_review jobs whose stream entry was lost.
With --once it relays until nothing is pending and exits.`

func relayCmd(a *app, args []string) error {
	var (
		common commonConfig
		rc     relayConfig
		sc     serveConfig
		once   bool
	)
	s := newSettings("relay", a.env)
	common.register(s)
	rc.register(s)
	sc.register(s)
	s.add(boolSetting(&once, "", "once", false, "relay until nothing is pending, then exit 0"))
	if _, err := a.parseOrHelp(s, args, "jobrelay relay [--once] [flags]", relayHelp); err != nil {
		return err
	}
	logger := a.logger(common.LogFormat, common.LogLevel)
	cl, err := openClients(a.ctx, &common, 4)
	if err != nil {
		return err
	}
	defer cl.Close()

	obs := newObservability()
	cfg := rc.config(common.Stream, logger)
	cfg.Registerer = obs.reg
	r, err := relay.New(cl.pool, cl.rdb, cfg)
	if err != nil {
		return usagef("%v", err)
	}
	logStart(a.ctx, logger, "relay", &common, relayAttrs(&rc, once)...)
	logPublishPath(a.ctx, logger, cl)

	if once {
		res, err := r.DrainReport(a.ctx)
		if err != nil {
			return err
		}
		// Rows the database refused are no reason to fail: they are
		// isolated, and named here.
		unrelayed := append(append([]string{}, res.Failed...), res.LeftAlone...)
		if len(unrelayed) > 0 {
			logger.WarnContext(a.ctx, "relay: "+strconv.Itoa(len(unrelayed))+" jobs could not be relayed (see their last_error)",
				slog.Int("num_unrelayed", len(unrelayed)), slog.Any("job_ids", unrelayed),
				slog.Int("num_failed", len(res.Failed)), slog.Any("left_pending", res.LeftAlone))
		}
		logger.InfoContext(a.ctx, "relay: nothing left pending; exiting", slog.Int("num_relayed", res.Jobs-len(unrelayed)))
		return nil
	}

	wait, err := obs.start(a.ctx, cl, &sc, common.Stream, logger, r)
	if err != nil {
		return err
	}
	defer wait()
	return r.Run(a.ctx)
}

func relayAttrs(rc *relayConfig, once bool) []slog.Attr {
	return []slog.Attr{
		slog.Int("batch_size", rc.BatchSize),
		slog.Int("workers", rc.Workers),
		slog.Duration("poll_interval", rc.PollInterval),
		slog.Bool("poll_only", rc.PollOnly),
		slog.Duration("cycle_timeout", rc.CycleTimeout),
		slog.Duration("reenqueue_after", rc.ReenqueueAfter),
		slog.Int("max_stream_lag", rc.MaxStreamLag),
		slog.String("group", rc.Group),
		slog.Bool("once", once),
	}
}

// logPublishPath says how publishing is made idempotent on this server.
// Redis 8.6's native XADD IDMP is not used: it keeps at most 10,000 ids per
// producer (IDMP-MAXSIZE), which at tens of thousands of jobs per second
// forgets a batch within a fraction of a second, sooner than a dead relay's
// row locks are released. The script keeps the records of uncommitted
// batches for DEDUP_TTL whatever the rate, and costs no memory once a batch
// commits.
func logPublishPath(ctx context.Context, logger *slog.Logger, cl *clients) {
	version := redisVersion(ctx, cl.rdb)
	attrs := []slog.Attr{slog.String("redis_version", version)}
	if version == "" {
		attrs[0] = slog.String("redis_version", "unknown (unreachable for now)")
	}
	if atLeast(version, 8, 6) {
		attrs = append(attrs, slog.String("note", "XADD IDMP is available but not used: IDMP-MAXSIZE caps its window at 10,000 ids per producer"))
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "relay: idempotent publish through the dedup script (records of uncommitted batches kept for DEDUP_TTL)", attrs...)
}

// atLeast compares a "major.minor.patch" version.
func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (ma > major || ma == major && mi >= minor)
}
