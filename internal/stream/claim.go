package stream

import (
	"context"
	"fmt"
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

// Refresh keeps the consumer's claim on its entries fresh (see
// refreshScript) and returns the IDs it still owns.
func Refresh(ctx context.Context, rdb redis.Scripter, stream, group, consumer string, ids []string) ([]string, error) {
	args := make([]any, 0, len(ids)+2)
	args = append(args, group, consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	owned, err := refreshScript.Run(ctx, rdb, []string{stream}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("refresh claims on %s: %w", stream, err)
	}
	return owned, nil
}

// reclaimScript takes over entries idle for longer than min-idle from any
// consumer (XAUTOCLAIM) and returns them with their delivery counts, which
// XAUTOCLAIM itself does not report.
//
// KEYS[1] stream. ARGV[1] group, ARGV[2] consumer, ARGV[3] min-idle ms,
// ARGV[4] start cursor, ARGV[5] count.
// Returns {next cursor, entries, delivery counts, IDs of deleted entries}.
var reclaimScript = redis.NewScript(`
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local counts = {}
for i, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  if #p > 0 then counts[i] = p[1][4] else counts[i] = 0 end
end
return {r[1], r[2], counts, r[3] or {}}
`)

// Claimed is an entry taken over by Reclaim.
type Claimed struct {
	Message    redis.XMessage
	Deliveries int64 // including this one
}

// ReclaimResult is one page of Reclaim.
type ReclaimResult struct {
	Next    string    // cursor for the next call; "0-0" when the scan is done
	Claimed []Claimed // entries now owned by the consumer
	Deleted []string  // IDs that were pending but whose entries no longer exist
}

// Reclaim takes over up to count entries of the group idle for at least
// minIdle, scanning from start (see reclaimScript).
func Reclaim(ctx context.Context, rdb redis.Scripter, stream, group, consumer string, minIdle time.Duration, start string, count int) (ReclaimResult, error) {
	res, err := reclaimScript.Run(ctx, rdb, []string{stream},
		group, consumer, minIdle.Milliseconds(), start, count).Slice()
	if err != nil {
		return ReclaimResult{}, fmt.Errorf("reclaim idle entries of %s: %w", stream, err)
	}
	if len(res) != 4 {
		return ReclaimResult{}, fmt.Errorf("reclaim idle entries of %s: script returned %d values", stream, len(res))
	}
	out := ReclaimResult{}
	out.Next, _ = res[0].(string)
	entries, _ := res[1].([]any)
	counts, _ := res[2].([]any)
	for i, e := range entries {
		msg, ok := parseMessage(e)
		if !ok {
			continue
		}
		var n int64
		if i < len(counts) {
			n, _ = counts[i].(int64)
		}
		out.Claimed = append(out.Claimed, Claimed{Message: msg, Deliveries: n})
	}
	deleted, _ := res[3].([]any)
	for _, d := range deleted {
		if s, ok := d.(string); ok {
			out.Deleted = append(out.Deleted, s)
		}
	}
	return out, nil
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

// DeleteIdleConsumers removes the group's consumers that have nothing
// pending and were inactive for longer than idle (see
// deleteIdleConsumersScript), and returns their names.
func DeleteIdleConsumers(ctx context.Context, rdb redis.Scripter, stream, group, keep string, idle time.Duration) ([]string, error) {
	names, err := deleteIdleConsumersScript.Run(ctx, rdb, []string{stream}, group, keep, idle.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("delete idle consumers of %s/%s: %w", stream, group, err)
	}
	return names, nil
}
