package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestABurstIsTrimmedOnATimer(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	b.publish(t, 300)
	cfg := b.cfg
	// Longer than the burst takes: the results trim once, at its start.
	cfg.TrimInterval = 2 * time.Second
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	c, _ := b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 300 && b.pending(t) == 0 }, "all reviewed")

	// No result arrives any more; the timer trims what the group is done
	// with. (Trimming removes whole nodes of up to 100 entries: the last
	// one stays.)
	eventually(t, func() bool {
		n, err := b.rdb.XLen(ctx, b.stream).Result()
		require.NoError(t, err)
		return n <= 100
	}, "trimmed without results")
	// Counted once the trim's script returns, a moment after XLEN shows it.
	eventually(t, func() bool { return testutil.ToFloat64(c.m.Trimmed) > 0 }, "trimmed entries counted")
}

func TestARefusedTrimIsAnError(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	admin := srv.Client()
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "consumer", "on", ">pw", "~*", "&*", "+@all", "-xtrim").Err())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "consumer", Password: "pw", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	b := setupWith(t, rdb)
	b.publish(t, 50)
	cfg := b.cfg
	cfg.TrimInterval = 20 * time.Millisecond
	cfg.Handler = HandlerFunc(func(context.Context, Job) error { return nil })
	c, _ := b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 50 }, "all reviewed")
	eventually(t, func() bool { return testutil.ToFloat64(c.m.Errors.WithLabelValues("trim")) >= 3 }, "trims refused")
	refused := b.logs.Matching("consumer: trimming the stream failed")
	require.Len(t, refused, 1, "one line when trimming starts failing, not one per attempt")
	require.Equal(t, "ERROR", refused[0].Level.String())

	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "consumer", "+xtrim").Err())
	eventually(t, func() bool { return len(b.logs.Matching("consumer: trimming the stream works again")) == 1 }, "trims work again")
}
