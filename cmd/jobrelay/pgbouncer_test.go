package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Issue 11, item 4: relays and consumers work through PgBouncer in
// transaction mode. The relay's session settings would be refused in the
// startup packet, and held by the wrong client if set on the session: they
// are set per transaction. pgx's cache of prepared statements does not
// survive transaction pooling before PgBouncer 1.21: the URL turns it off
// with default_query_exec_mode. LISTEN does not work through the pooler:
// the relays poll, or LISTEN on PostgreSQL directly (LISTEN_DATABASE_URL).
func TestPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	bouncer := testenv.StartPgBouncer(t)
	for _, tc := range []struct {
		name      string
		execMode  string
		listenURL bool // LISTEN on PostgreSQL directly, no poll to speak of
	}{
		{name: "poll only", execMode: "cache_describe"},
		{name: "listen direct", execMode: "cache_describe", listenURL: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const jobs = 2000
			ctx := ctxT(t)
			pool := testenv.NewDatabase(t, "UTF8", "")
			direct := pool.Config().ConnString()
			through := bouncer.URL(direct) + "&default_query_exec_mode=" + tc.execMode
			rdb := testenv.NewRedis(t)
			stream := testenv.Stream(t, rdb)
			extra := []string{"BATCH_SIZE=50", "CYCLE_TIMEOUT=5s", "CONCURRENCY=16", "REENQUEUE_AFTER=1m"}
			if tc.listenURL {
				extra = append(extra, "POLL_INTERVAL=1h", "LISTEN_DATABASE_URL="+direct)
			} else {
				extra = append(extra, "POLL_ONLY=true", "POLL_INTERVAL=100ms")
			}
			env := testenv.ProcessEnv(through, testenv.RedisURL(), stream, extra...)
			dir := t.TempDir()

			var relays []*proc
			for range 2 {
				relays = append(relays, start(t, dir, env, "relay"))
				start(t, dir, env, "consume")
			}
			for _, r := range relays {
				require.Eventually(t, func() bool { return len(r.Logged("relay: started")) == 1 }, time.Minute, 5*time.Millisecond)
			}
			if tc.listenURL {
				// Both relays listen on PostgreSQL itself: the seed below
				// reaches them only by notification.
				require.Eventually(t, func() bool {
					var n int
					require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'jobrelay listener'`).Scan(&n))
					return n == 2
				}, time.Minute, 10*time.Millisecond)
			}

			code, out := runBinary(t, dir, env, "seed", "-n", "2000")
			require.Zero(t, code, out)
			require.Eventually(t, func() bool {
				c, err := db.CountByStatus(ctx, pool)
				require.NoError(t, err)
				return c[db.StatusReviewed] == jobs
			}, 2*time.Minute, 20*time.Millisecond)

			info, err := rdb.XInfoStream(ctx, stream).Result()
			require.NoError(t, err)
			require.EqualValues(t, jobs, info.EntriesAdded, "one entry per job")
			code, out = runBinary(t, dir, env, "status")
			require.Zero(t, code, out)
			require.Contains(t, out, "reviewed")
			for _, r := range relays {
				require.Empty(t, r.Logged("relay: cycle failed"), "no cycle fails through the pooler")
				require.NotContains(t, r.Output(), "prepared statement")
			}
			require.NotContains(t, bouncer.Output(), "unsupported startup parameter")
			if tc.listenURL {
				require.Contains(t, relays[0].Output(), `"listen_database_url"`, "the start-up line shows the LISTEN URL")
			}
		})
	}
}
