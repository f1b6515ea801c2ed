package db

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// txTimeoutsSQL bounds the transaction it runs in: statement_timeout for
// each of its statements, idle_in_transaction_session_timeout for the time
// it may wait between them (a relay that hangs or vanishes mid-cycle). The
// third argument of set_config, true, makes them SET LOCAL: they end with
// the transaction. Session settings would not do behind a transaction
// pooler (PgBouncer's pool_mode=transaction), where the next transaction
// of the session may run on another server connection, and this
// transaction's server connection may next serve another client.
const txTimeoutsSQL = `SELECT set_config('statement_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $1, true)`

// queueBegin queues BEGIN and, for a positive timeout, the transaction's
// own timeouts (see txTimeoutsSQL), rounded up to whole milliseconds.
func queueBegin(b *pgx.Batch, timeout time.Duration) {
	b.Queue("BEGIN")
	if timeout <= 0 {
		return
	}
	ms := (timeout + time.Millisecond - 1) / time.Millisecond
	b.Queue(txTimeoutsSQL, strconv.FormatInt(int64(ms), 10))
}
