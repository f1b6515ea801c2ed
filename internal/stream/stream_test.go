package stream

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: true} }

func job(id string, attempts int32) db.Job {
	return db.Job{ID: id, Site: text("otta"), Title: text("SRE"), Company: text("Acme"), JobURL: text("https://x/" + id), Attempts: attempts}
}

func TestPublishIsIdempotentPerJobAndAttempt(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	params := func(jobs []db.Job, f DedupRecords) *PublishParams {
		return &PublishParams{Stream: s, DedupTTL: 10 * time.Minute, EnqueuedAt: "2026-11-28T10:00:00Z", Jobs: jobs, Forget: f}
	}

	first, err := Publish(ctx, rdb, params([]db.Job{job("a", 0), job("b", 0)}, DedupRecords{}))
	require.NoError(t, err)
	require.Len(t, first.StreamIDs, 2)

	// The same jobs and attempts again (the first batch never committed),
	// with a new one: the recorded IDs come back, one entry is added.
	again, err := Publish(ctx, rdb, params([]db.Job{job("b", 0), job("c", 0), job("a", 0)}, DedupRecords{}))
	require.NoError(t, err)
	require.Equal(t, first.StreamIDs[1], again.StreamIDs[0])
	require.Equal(t, first.StreamIDs[0], again.StreamIDs[2])
	n, err := rdb.XLen(ctx, s).Result()
	require.NoError(t, err)
	require.EqualValues(t, 3, n)

	// A later attempt is a new entry.
	next, err := Publish(ctx, rdb, params([]db.Job{job("a", 1)}, DedupRecords{}))
	require.NoError(t, err)
	require.NotEqual(t, first.StreamIDs[0], next.StreamIDs[0])

	// Records expire after the TTL, a batch at a time (each call's new
	// records are a batch), in keys of the stream's hash slot.
	fields := slices.Concat(again.Records.Fields, next.Records.Fields)
	require.Equal(t, []string{"b:1", "c:1", "a:1", "#c:1", "a:2", "#a:2"}, fields, "the second call added c:1 only")
	exp, err := rdb.ZRangeWithScores(ctx, "{"+s+"}:sent:exp", 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, exp, 3) // the three calls' batches
	now := time.Now().UnixMilli()
	for _, z := range exp {
		require.InDelta(t, float64(now+10*time.Minute.Milliseconds()), z.Score, float64(time.Minute.Milliseconds()))
	}
	require.Equal(t, "a:1 b:1", rdb.HGet(ctx, "{"+s+"}:sent", "#a:1").Val())
	ttl, err := rdb.PTTL(ctx, "{"+s+"}:sent").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 9*time.Minute)
	require.LessOrEqual(t, ttl, 10*time.Minute)

	// Once committed, a batch's records are forgotten by the next call.
	_, err = Publish(ctx, rdb, params(nil, DedupRecords{Fields: fields}))
	require.NoError(t, err)
	left, err := rdb.HMGet(ctx, "{"+s+"}:sent", fields...).Result()
	require.NoError(t, err)
	require.Equal(t, []any{nil, nil, nil, nil, nil, nil}, left)
	require.Equal(t, []string{"#a:1"}, rdb.ZRange(ctx, "{"+s+"}:sent:exp", 0, -1).Val(),
		"the first call's batch was never committed: it waits for its TTL")
	// The hash stays a hash table, whatever number of records it holds.
	enc, err := rdb.ObjectEncoding(ctx, "{"+s+"}:sent").Result()
	require.NoError(t, err)
	require.Equal(t, "hashtable", enc)
}

// TestExpiredBatchesGoWithTheirRecords: a batch that no relay committed
// (its relay died) goes, records and all, once its TTL has passed, and so
// does a single record written by an earlier version of the script.
func TestExpiredBatchesGoWithTheirRecords(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	sent, exp := "{"+s+"}:sent", "{"+s+"}:sent:exp"
	params := func(jobs ...db.Job) *PublishParams {
		return &PublishParams{Stream: s, DedupTTL: 10 * time.Minute, EnqueuedAt: "t", Jobs: jobs}
	}
	_, err := Publish(ctx, rdb, params(job("a", 0), job("b", 0)))
	require.NoError(t, err)
	// Make it expired, and add an expired record of the old kind.
	require.NoError(t, rdb.ZAdd(ctx, exp, redis.Z{Score: 1, Member: "#a:1"}, redis.Z{Score: 1, Member: "old:1"}).Err())
	require.NoError(t, rdb.HSet(ctx, sent, "old:1", "1-1").Err())

	_, err = Publish(ctx, rdb, params(job("c", 0)))
	require.NoError(t, err)
	fields, err := rdb.HKeys(ctx, sent).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"~", "c:1", "#c:1"}, fields)
	require.Equal(t, []string{"#c:1"}, rdb.ZRange(ctx, exp, 0, -1).Val())
}

func TestPublishKeepsNullsAbsentAndValuesIntact(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	bad := string([]byte{0xff, 0xfe, 'o', 'k'})
	j := db.Job{ID: "n", Site: text(""), Title: pgtype.Text{}, Company: text(bad), JobURL: pgtype.Text{}}
	_, err := Publish(ctx, rdb, &PublishParams{Stream: s, DedupTTL: time.Minute, EnqueuedAt: "t", Jobs: []db.Job{j}})
	require.NoError(t, err)
	msgs, err := rdb.XRange(ctx, s, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, map[string]any{"job_id": "n", "site": "", "company": bad, "attempt": "1", "enqueued_at": "t"}, msgs[0].Values)
}

func TestTrimKeepsWhatAGroupNeeds(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	for range 1000 {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{"k", "v"}}).Err())
	}
	// No group: nothing is trimmed, a group created later starts at 0.
	n, err := Trim(ctx, rdb, s)
	require.NoError(t, err)
	require.Zero(t, n)

	require.NoError(t, rdb.XGroupCreate(ctx, s, "g", "0").Err())
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{s, ">"}, Count: 600}).Result()
	require.NoError(t, err)
	msgs := read[0].Messages
	// Acknowledge all but entry 300: it and everything after it stay.
	for i, m := range msgs {
		if i != 300 {
			require.NoError(t, rdb.XAck(ctx, s, "g", m.ID).Err())
		}
	}
	_, err = Trim(ctx, rdb, s)
	require.NoError(t, err)
	first, err := rdb.XRangeN(ctx, s, "-", "+", 1).Result()
	require.NoError(t, err)
	firstID, _ := ParseID(first[0].ID)
	heldID, _ := ParseID(msgs[300].ID)
	require.False(t, heldID.Less(firstID), "the pending entry was trimmed")
	length, err := rdb.XLen(ctx, s).Result()
	require.NoError(t, err)
	require.Less(t, length, int64(1000), "what is acknowledged before the pending entry goes")

	// Acknowledged: trimming follows the last delivered entry; unread ones stay.
	require.NoError(t, rdb.XAck(ctx, s, "g", msgs[300].ID).Err())
	_, err = Trim(ctx, rdb, s)
	require.NoError(t, err)
	length, err = rdb.XLen(ctx, s).Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, length, int64(400), "unread entries must stay")
	require.Less(t, length, int64(600))
}

func TestTrimRemovesALongBacklogInOneCall(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	// 25,000 entries: one XTRIM MINID ~ removes at most 100 nodes of 100
	// entries, so one XTRIM alone would leave 15,000 behind.
	const entries = 25_000
	for done := 0; done < entries; done += 1000 {
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for range 1000 {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{"k", "v"}})
			}
			return nil
		})
		require.NoError(t, err)
	}
	// A group that has read and acknowledged all of it.
	require.NoError(t, rdb.XGroupCreate(ctx, s, "g", "$").Err())
	n, err := Trim(ctx, rdb, s)
	require.NoError(t, err)
	length, err := rdb.XLen(ctx, s).Result()
	require.NoError(t, err)
	require.Less(t, length, int64(200), "one call trims the whole backlog but the last node")
	require.Equal(t, entries-length, n)
}

func TestLive(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	var ids []string
	for range 4 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{"k", "v"}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	// Without the group every existing entry is live (unread).
	live, err := Live(ctx, rdb, s, "g", append(ids, "1-1", "not-an-id"))
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true, true, false, false}, live)

	require.NoError(t, rdb.XGroupCreate(ctx, s, "g", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{s, ">"}, Count: 2}).Err())
	require.NoError(t, rdb.XAck(ctx, s, "g", ids[0]).Err())
	// ids[0] acknowledged, ids[1] pending, ids[2:] unread.
	live, err = Live(ctx, rdb, s, "g", ids)
	require.NoError(t, err)
	require.Equal(t, []bool{false, true, true, true}, live)

	require.NoError(t, rdb.Del(ctx, s).Err())
	live, err = Live(ctx, rdb, s, "g", ids)
	require.NoError(t, err)
	require.Equal(t, []bool{false, false, false, false}, live)
}

// A job's priority and tenant reach its entry (what XINFO STREAM … FULL
// and XRANGE show) when set; entries of jobs without are as before.
func TestPublishCarriesPriorityAndTenant(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	s := testenv.Stream(t, rdb)
	urgent := job("u", 0)
	urgent.Priority = 10
	acme := job("t", 0)
	acme.Tenant = text("acme")
	both := job("b", 0)
	both.Priority, both.Tenant, both.Title = -2, text("globex"), pgtype.Text{}
	for _, batch := range [][]db.Job{{job("plain", 0)}, {job("p", 0), urgent, acme, both}} {
		_, err := Publish(ctx, rdb, &PublishParams{Stream: s, DedupTTL: time.Minute, EnqueuedAt: "t", Jobs: batch})
		require.NoError(t, err)
	}
	msgs, err := rdb.XRange(ctx, s, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 5)
	base := func(id string) map[string]any {
		return map[string]any{"job_id": id, "site": "otta", "title": "SRE", "company": "Acme", "job_url": "https://x/" + id,
			"attempt": "1", "enqueued_at": "t"}
	}
	require.Equal(t, base("plain"), msgs[0].Values)
	require.Equal(t, base("p"), msgs[1].Values, "a job without either in a batch with some")
	want := base("u")
	want["priority"] = "10"
	require.Equal(t, want, msgs[2].Values)
	want = base("t")
	want["tenant"] = "acme"
	require.Equal(t, want, msgs[3].Values)
	want = base("b")
	delete(want, "title")
	want["priority"], want["tenant"] = "-2", "globex"
	require.Equal(t, want, msgs[4].Values)
}

// A Redis that does not know the script (restarted, failed over, SCRIPT
// FLUSH) answers EVALSHA with NOSCRIPT: Publish sends the script itself,
// for one partition and for several in one pipeline, and the entries are
// the same as with a warm script cache.
func TestPublishSendsTheScriptToARedisThatForgotIt(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.StartRedisServer(t).Client()
	for _, parts := range []int{1, 3} {
		s := testenv.Stream(t, rdb)
		plain, rich := job("plain", 0), job("rich-3", 2) // partitions 0 and 1 of 3: two calls in a pipeline
		rich.Site, rich.Priority, rich.Tenant = pgtype.Text{}, 7, text("acme")
		params := &PublishParams{Stream: s, Partitions: parts, DedupTTL: time.Minute, EnqueuedAt: "t", Jobs: []db.Job{plain, rich}}

		require.NoError(t, rdb.ScriptFlush(ctx).Err())
		first, err := Publish(ctx, rdb, params)
		require.NoError(t, err, "%d partition(s)", parts)
		require.NoError(t, rdb.ScriptFlush(ctx).Err())
		again, err := Publish(ctx, rdb, params)
		require.NoError(t, err, "%d partition(s)", parts)
		require.Equal(t, first.StreamIDs, again.StreamIDs, "the records still answer")
		require.Equal(t, parts > 1, first.Streams[0] != first.Streams[1], "with partitions, one call per job")
		require.NoError(t, rdb.ScriptFlush(ctx).Err())
		_, err = Publish(ctx, rdb, &PublishParams{Stream: s, Partitions: parts, DedupTTL: time.Minute, Forget: first.Records})
		require.NoError(t, err, "%d partition(s): a call that only forgets", parts)

		got := map[string]map[string]any{}
		for i, id := range first.StreamIDs {
			entries, err := rdb.XRange(ctx, first.Streams[i], id, id).Result()
			require.NoError(t, err)
			require.Len(t, entries, 1)
			got[entries[0].Values["job_id"].(string)] = entries[0].Values
		}
		require.Equal(t, map[string]any{"job_id": "plain", "site": "otta", "title": "SRE", "company": "Acme",
			"job_url": "https://x/plain", "attempt": "1", "enqueued_at": "t"}, got["plain"])
		require.Equal(t, map[string]any{"job_id": "rich-3", "title": "SRE", "company": "Acme", "job_url": "https://x/rich-3",
			"attempt": "3", "enqueued_at": "t", "priority": "7", "tenant": "acme"}, got["rich-3"], "a NULL site is left out")
	}
}
