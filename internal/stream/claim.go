package stream

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// refreshScript resets the idle time of entries a consumer still owns, so
// that other consumers do not reclaim a job whose handler is merely slow.
// XCLAIM ... JUSTID does not count a delivery. The ownership check makes it
// safe: an entry another consumer has already taken is left with it, never
// taken back.
//
// KEYS[1] stream. ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry IDs.
// Returns the IDs refreshed.
var refreshScript = redis.NewScript(`
local out = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    out[#out + 1] = ARGV[i]
  end
end
return out
`)

// Member names a consumer of a group of a stream.
type Member struct {
	Stream, Group, Consumer string
}

// Refresh keeps m's claim on its entries fresh (see refreshScript) and
// returns the IDs it still owns.
func Refresh(ctx context.Context, rdb redis.Scripter, m Member, ids []string) ([]string, error) {
	args := make([]any, 0, len(ids)+2)
	args = append(args, m.Group, m.Consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	owned, err := refreshScript.Run(ctx, rdb, []string{m.Stream}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("refresh claims on %s: %w", m.Stream, err)
	}
	return owned, nil
}

// RetryKey is the hash in which a group's consumers note the entries whose
// delivery failed, "{<stream>}:retry:<group>": field the entry ID, value
// "<due> <failures> <transient>", where due is when the entry may be
// retried (Unix ms, Redis's clock). See RecordFailure and Reclaim.
func RetryKey(stream, group string) string { return helperKey(stream, "retry:"+group) }

// RetryRecord is what the consumers note about an entry whose delivery
// failed, for the next one to know.
type RetryRecord struct {
	Failures  int // failed deliveries of the entry so far, of any kind
	Transient int // of those, failures counted as transient (see consumer)
}

// recordFailureScript notes a failed delivery: the entry may not be
// reclaimed before due, and its record is kept for the next delivery. With
// a retry count it also sets the entry's delivery counter, so that a
// failure that does not count is taken back (XCLAIM ... RETRYCOUNT ...
// JUSTID, which also restarts its idle time). Only the entry's owner may
// do so: an entry another consumer took over meanwhile is left alone.
//
// KEYS[1] stream, KEYS[2] retry hash. ARGV[1] group, ARGV[2] consumer,
// ARGV[3] entry ID, ARGV[4] delay in ms, ARGV[5] failures, ARGV[6]
// transient, ARGV[7] retry count or -1 to keep it, ARGV[8] TTL of the hash
// in ms. Returns 1 if noted, 0 if the consumer no longer owns the entry.
var recordFailureScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
if tonumber(ARGV[7]) >= 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', ARGV[7], 'JUSTID')
end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], string.format('%d %d %d', due, tonumber(ARGV[5]), tonumber(ARGV[6])))
redis.call('PEXPIRE', KEYS[2], ARGV[8])
return 1
`)

// FailureParams are the arguments of RecordFailure.
type FailureParams struct {
	Stream, Group, Consumer string
	ID                      string        // the entry
	Delay                   time.Duration // before the entry may be reclaimed
	Record                  RetryRecord   // handed to the next delivery
	// RetryCount, if not negative, becomes the entry's delivery counter
	// (XPENDING's, the one MaxDeliveries applies to).
	RetryCount int64
	// TTL is how long the retry hash lives after its last write: longer
	// than any Delay, so a record outlives its wait, and bounded, so that
	// records of entries no one reclaimed (acknowledged by another path,
	// or deleted while a group is gone) do not pile up.
	TTL time.Duration
}

// RecordFailure notes a failed delivery (see recordFailureScript). It
// reports false if the consumer no longer owns the entry.
func RecordFailure(ctx context.Context, rdb redis.Scripter, p *FailureParams) (bool, error) {
	n, err := recordFailureScript.Run(ctx, rdb, []string{p.Stream, RetryKey(p.Stream, p.Group)},
		p.Group, p.Consumer, p.ID, p.Delay.Milliseconds(), p.Record.Failures, p.Record.Transient,
		p.RetryCount, max(p.TTL, p.Delay+time.Minute).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("record failed delivery of %s: %w", p.ID, err)
	}
	return n == 1, nil
}

// reclaimScript takes over entries of the group that have been idle for at
// least min-idle and are due: an entry with a retry record (a failed
// delivery, see RecordFailure) waits until its due time, so retries back
// off; an entry without one (its consumer died or stopped mid-handler) is
// taken after min-idle. It scans at most scan pending entries (XPENDING
// IDLE, from just after the cursor) and claims at most count, each with
// XCLAIM min-idle: one script, so two consumers never take the same entry.
// A claimed entry's record is removed and returned, for its next delivery
// to continue from.
//
// An entry deleted from the stream while pending is dropped from the PEL
// by XCLAIM (Redis 7.0; acknowledged here for older servers) and reported,
// as XAUTOCLAIM does.
//
// KEYS[1] stream, KEYS[2] retry hash. ARGV[1] group, ARGV[2] consumer,
// ARGV[3] min-idle ms, ARGV[4] cursor (the last ID scanned, "0-0" to
// start), ARGV[5] count, ARGV[6] scan. Returns {next cursor ("0-0" when
// the scan is done), entries, delivery counts, records, deleted IDs}.
var reclaimScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = '-'
if ARGV[4] ~= '0-0' and ARGV[4] ~= '' then first = '(' .. ARGV[4] end
local scan = tonumber(ARGV[6])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], first, '+', scan)
local want = tonumber(ARGV[5])
local entries, counts, records, deleted = {}, {}, {}, {}
for i, p in ipairs(pending) do
  local id = p[1]
  local rec = redis.call('HGET', KEYS[2], id)
  local due = 0
  if rec then due = tonumber(string.match(rec, '^%d+')) or 0 end
  if due <= now then
    local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
    if rec then redis.call('HDEL', KEYS[2], id) end
    if #c == 0 or not c[1] or not c[1][2] then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      deleted[#deleted + 1] = id
    else
      entries[#entries + 1] = c[1]
      counts[#counts + 1] = p[4] + 1
      records[#records + 1] = rec or ''
      if #entries >= want then
        return {id, entries, counts, records, deleted}
      end
    end
  end
end
local next = '0-0'
if #pending >= scan then next = pending[#pending][1] end
return {next, entries, counts, records, deleted}
`)

// Claimed is an entry taken over by Reclaim.
type Claimed struct {
	Message    redis.XMessage
	Deliveries int64       // including this one
	Retry      RetryRecord // noted by the last failed delivery; zero if none
}

// ReclaimResult is one page of Reclaim.
type ReclaimResult struct {
	Next    string    // cursor for the next call; "0-0" when the scan is done
	Claimed []Claimed // entries now owned by the consumer
	Deleted []string  // IDs that were pending but whose entries no longer exist
}

// ReclaimParams are the arguments of Reclaim.
type ReclaimParams struct {
	Stream, Group, Consumer string
	MinIdle                 time.Duration // the least idle time of an entry taken over
	Cursor                  string        // where to resume; "0-0" (or "") to start
	Count                   int           // the most entries taken over
	Scan                    int           // the most pending entries looked at; defaults to 10 × Count, at least 100
}

// Reclaim takes over up to Count entries of the group idle for at least
// MinIdle and due for a retry, scanning from Cursor (see reclaimScript).
func Reclaim(ctx context.Context, rdb redis.Scripter, p *ReclaimParams) (ReclaimResult, error) {
	scan := p.Scan
	if scan <= 0 {
		scan = max(100, 10*p.Count)
	}
	res, err := reclaimScript.Run(ctx, rdb, []string{p.Stream, RetryKey(p.Stream, p.Group)},
		p.Group, p.Consumer, p.MinIdle.Milliseconds(), cmp.Or(p.Cursor, "0-0"), max(p.Count, 1), scan).Slice()
	if err != nil {
		return ReclaimResult{}, fmt.Errorf("reclaim idle entries of %s: %w", p.Stream, err)
	}
	if len(res) != 5 {
		return ReclaimResult{}, fmt.Errorf("reclaim idle entries of %s: script returned %d values", p.Stream, len(res))
	}
	out := ReclaimResult{}
	out.Next, _ = res[0].(string)
	entries, _ := res[1].([]any)
	counts, _ := res[2].([]any)
	records, _ := res[3].([]any)
	for i, e := range entries {
		msg, ok := parseMessage(e)
		if !ok {
			continue
		}
		c := Claimed{Message: msg}
		if i < len(counts) {
			c.Deliveries, _ = counts[i].(int64)
		}
		if i < len(records) {
			rec, _ := records[i].(string)
			c.Retry = parseRetryRecord(rec)
		}
		out.Claimed = append(out.Claimed, c)
	}
	deleted, _ := res[4].([]any)
	for _, d := range deleted {
		if s, ok := d.(string); ok {
			out.Deleted = append(out.Deleted, s)
		}
	}
	return out, nil
}

// parseRetryRecord reads "<due> <failures> <transient>"; anything else is
// no record.
func parseRetryRecord(s string) RetryRecord {
	f := strings.Fields(s)
	if len(f) != 3 {
		return RetryRecord{}
	}
	failures, err1 := strconv.Atoi(f[1])
	transient, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return RetryRecord{}
	}
	return RetryRecord{Failures: failures, Transient: transient}
}

// parseMessage reads an entry {id, {field, value, ...}} of a script reply.
// An entry whose body was deleted has a nil body.
func parseMessage(v any) (redis.XMessage, bool) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return redis.XMessage{}, false
	}
	id, ok := pair[0].(string)
	if !ok {
		return redis.XMessage{}, false
	}
	msg := redis.XMessage{ID: id, Values: map[string]any{}}
	flat, _ := pair[1].([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		if k, ok := flat[i].(string); ok {
			msg.Values[k] = flat[i+1]
		}
	}
	return msg, true
}

// deleteIdleConsumersScript removes consumers of a group that have nothing
// pending and have been inactive for longer than the threshold. Deleting a
// consumer with pending entries would orphan them (redis/redis#9745), so
// the check and the delete are one atomic step; entries of a dead consumer
// are reclaimed by the live ones first, and the consumer goes once empty.
// Redis 7.2+ reports "inactive" (since the last successful read or claim);
// 7.0 only "idle", which is used instead.
//
// KEYS[1] stream. ARGV[1] group, ARGV[2] consumer to keep (the caller),
// ARGV[3] inactivity threshold in ms. Returns the names deleted.
var deleteIdleConsumersScript = redis.NewScript(`
local out = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local inactive = tonumber(info['inactive'] or info['idle'])
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0 and inactive ~= nil
     and inactive >= 0 and inactive > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    out[#out + 1] = info['name']
  end
end
return out
`)

// DeleteIdleConsumers removes the consumers of m's group, m itself
// excepted, that have nothing pending and were inactive for longer than
// idle (see deleteIdleConsumersScript), and returns their names.
func DeleteIdleConsumers(ctx context.Context, rdb redis.Scripter, m Member, idle time.Duration) ([]string, error) {
	names, err := deleteIdleConsumersScript.Run(ctx, rdb, []string{m.Stream}, m.Group, m.Consumer, idle.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("delete idle consumers of %s/%s: %w", m.Stream, m.Group, err)
	}
	return names, nil
}
