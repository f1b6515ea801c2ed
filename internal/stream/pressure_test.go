package stream

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestReadPressureCountsTheGroupFurthestBehind(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)

	p, err := ReadPressure(ctx, rdb, s)
	require.NoError(t, err)
	require.Zero(t, p.Lag, "no stream yet")

	var ids []string
	for i := range 10 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"job_id", strconv.Itoa(i)}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	p, err = ReadPressure(ctx, rdb, s)
	require.NoError(t, err)
	require.Equal(t, Pressure{Lag: 10, Length: 10, UsedMemory: p.UsedMemory, MaxMemory: p.MaxMemory}, p,
		"no group: every entry is unread")

	read := func(group string, n int64) {
		t.Helper()
		_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{s, ">"}, Count: n}).Result()
		require.NoError(t, err)
	}
	for _, g := range []string{"jobrelay", "analytics", "audit"} {
		require.NoError(t, rdb.XGroupCreate(ctx, s, g, "0").Err())
	}
	read("jobrelay", 10)
	read("analytics", 3)
	read("audit", 8)
	p, err = ReadPressure(ctx, rdb, s)
	require.NoError(t, err)
	require.EqualValues(t, 7, p.Lag, "the group furthest behind, not the relay's own")
	require.Equal(t, "analytics", p.LagGroup)
	require.EqualValues(t, 10, p.Length)

	// An entry deleted after where a group has read: Redis cannot tell
	// that group's lag, and the length bounds it.
	require.NoError(t, rdb.XDel(ctx, s, ids[9]).Err())
	p, err = ReadPressure(ctx, rdb, s)
	require.NoError(t, err)
	require.EqualValues(t, 9, p.Lag)
	require.EqualValues(t, 9, p.Length)
}

func TestARefusedTrimIsAnErrorLoggedOnce(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := testenv.StartRedisServer(t)
	admin := srv.Client()
	s := testenv.Stream(t, admin)
	for i := range 300 {
		require.NoError(t, admin.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"job_id", strconv.Itoa(i)}}).Err())
	}
	require.NoError(t, admin.XGroupCreate(ctx, s, "g", "$").Err()) // done with every entry

	// Users that may not run XTRIM, or no scripts at all.
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "notrim", "on", ">pw", "~*", "&*", "+@all", "-xtrim").Err())
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "&*", "+@all", "-@scripting").Err())
	logger, logs := testenv.NewLogs(t)
	var log TrimLog
	for _, user := range []string{"notrim", "noscript"} {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: user, Password: "pw"})
		defer rdb.Close()
		for range 3 {
			n, err := Trim(ctx, rdb, s)
			require.Error(t, err, "user %s", user)
			require.Zero(t, n)
			var rerr redis.Error
			require.ErrorAs(t, err, &rerr, "the server's refusal: %v", err)
			log.Failed(ctx, logger, "test", err)
		}
	}
	failed := logs.Matching("test: trimming the stream failed")
	require.Len(t, failed, 1, "one line when trimming starts failing")
	require.Equal(t, "ERROR", failed[0].Level.String())

	n, err := Trim(ctx, admin, s)
	require.NoError(t, err)
	require.Positive(t, n)
	log.OK(ctx, logger, "test")
	log.OK(ctx, logger, "test")
	require.Len(t, logs.Matching("test: trimming the stream works again"), 1)
}
