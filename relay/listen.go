package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/backoff"
)

// listenCheckInterval is how long the listener waits for a notification
// before it checks that its connection still works: a connection that died
// without a word (a dropped network) would otherwise wait forever.
const listenCheckInterval = time.Minute

// listen keeps a LISTEN connection open until ctx is done and turns
// notifications for the relay's schema into wake-ups. Whenever it
// (re)connects it also wakes the relay: notifications sent while it was
// away are lost, the work they announced is not.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	retry := backoff.Retrier{Logger: r.log, Level: slog.LevelWarn,
		Failing:   "relay: LISTEN connection lost; reconnecting, polling meanwhile",
		Recovered: "relay: LISTEN connection restored"}
	for {
		err := r.listenOnce(ctx, wake, func() { retry.OK(ctx) })
		r.listening.Store(false)
		r.m.Listening.Set(0)
		if ctx.Err() != nil {
			return
		}
		r.m.Errors.WithLabelValues("listen").Inc()
		if !retry.Failed(ctx, err) {
			return
		}
	}
}

// listenOnce connects, listens and forwards notifications until the
// connection fails or ctx is done.
func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}, connected func()) error {
	if r.hooks.beforeListen != nil {
		r.hooks.beforeListen()
	}
	conn, err := pgx.ConnectConfig(ctx, r.listenCfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	schema, err := db.Listen(ctx, conn)
	if err != nil {
		return err
	}
	r.listenerPID.Store(conn.PgConn().PID())
	r.listening.Store(true)
	r.m.Listening.Set(1)
	connected()
	r.log.DebugContext(ctx, "relay: listening", slog.String("channel", db.NotifyChannel), slog.String("schema", schema))
	signal(wake) // catch up on what was inserted while not listening

	for {
		wctx, cancel := context.WithTimeout(ctx, listenCheckInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Payload == schema {
				signal(wake)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Quiet for a while: make sure the connection is alive.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("check LISTEN connection: %w", err)
			}
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}
