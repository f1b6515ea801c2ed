package stream

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Before the keys carried a hash tag, a stream's helper keys were named
// "<stream>:dead", "<stream>:retry:<group>", "<stream>:health", and the
// dedup records lived in hashes "<stream>:sent:<minute>" indexed by the
// sorted set "<stream>:sent" (scored by expiry). UpgradeKeys moves what a
// running deployment holds there to the new names.

// moveStreamScript appends the entries of an old dead-letter stream to the
// new one (RENAME when the new one does not exist yet) and deletes the old.
//
// KEYS[1] old stream, KEYS[2] new stream. Returns the entries moved.
var moveStreamScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('XLEN', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return n
end
local start = '-'
while true do
  local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 500)
  for _, e in ipairs(page) do
    redis.call('XADD', KEYS[2], '*', unpack(e[2]))
  end
  if #page < 500 then break end
  start = '(' .. page[#page][1]
end
redis.call('DEL', KEYS[1])
return n
`)

// moveHashScript copies an old hash's fields into the new one, keeping any
// field the new one has, and deletes the old; the new hash keeps the
// longer of the two TTLs.
//
// KEYS[1] old hash, KEYS[2] new hash. Returns the fields moved.
var moveHashScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  n = n + redis.call('HSETNX', KEYS[2], all[i], all[i + 1])
end
redis.call('DEL', KEYS[1])
local cur = redis.call('PTTL', KEYS[2])
if pttl > 0 and cur ~= -1 and cur < pttl then redis.call('PEXPIRE', KEYS[2], pttl) end
if pttl == -1 and cur > 0 then redis.call('PERSIST', KEYS[2]) end
return n
`)

// moveDedupScript moves the dedup records of the old per-minute hashes
// into the new hash and expiry set, each record expiring when its hash
// would have, and deletes the old hashes and their index.
//
// KEYS[1] new records hash, KEYS[2] new expiry set, KEYS[3] old index,
// KEYS[4..] the old hashes. ARGV[i] is the expiry (Unix ms) of KEYS[i+3].
// Returns the records moved.
var moveDedupScript = redis.NewScript(`
local n = 0
local longest = 0
for i = 4, #KEYS do
  local expireAt = tonumber(ARGV[i - 3])
  local all = redis.call('HGETALL', KEYS[i])
  for j = 1, #all, 2 do
    if all[j] ~= '~' and redis.call('HSETNX', KEYS[1], all[j], all[j + 1]) == 1 then
      redis.call('ZADD', KEYS[2], expireAt, all[j])
      n = n + 1
      if expireAt > longest then longest = expireAt end
    end
  end
  redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[3])
if n > 0 then
  for _, k in ipairs({KEYS[1], KEYS[2]}) do
    local pttl = redis.call('PTTL', k)
    if pttl ~= -1 then
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      if pttl < longest - now then redis.call('PEXPIREAT', k, longest) end
    end
  end
end
return n
`)

// Upgraded is what UpgradeKeys moved.
type Upgraded struct {
	DeadLetters  int64 // entries of the dead-letter stream
	DedupRecords int64 // records of batches not known to be committed
	RetryRecords int64 // records of failed deliveries
}

// Any reports whether anything was moved.
func (u Upgraded) Any() bool { return u.DeadLetters+u.DedupRecords+u.RetryRecords > 0 }

// UpgradeKeys moves stream's helper keys from their names before the hash
// tag to the current ones, merging with what is already there, so that an
// upgraded deployment keeps its dead letters, its dedup records (a relay
// that died between XADD and COMMIT still gets its entries' IDs back) and
// its retry records. Each move is one atomic script; running it again, or
// from several processes at once, is harmless.
//
// Deployments before the hash tag did not run on Redis Cluster, so a
// ClusterClient has nothing to move (and the old and new names sit in
// different slots): UpgradeKeys does nothing there.
func UpgradeKeys(ctx context.Context, rdb redis.UniversalClient, stream, group string) (Upgraded, error) {
	var u Upgraded
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return u, nil
	}
	var err error
	if u.DeadLetters, err = moveStreamScript.Run(ctx, rdb, []string{stream + ":dead", DeadLetterKey(stream)}).Int64(); err != nil {
		return u, fmt.Errorf("move the dead letters of %s to %s: %w", stream, DeadLetterKey(stream), err)
	}
	if u.RetryRecords, err = moveHashScript.Run(ctx, rdb, []string{stream + ":retry:" + group, RetryKey(stream, group)}).Int64(); err != nil {
		return u, fmt.Errorf("move the retry records of %s: %w", stream, err)
	}
	if _, err = moveHashScript.Run(ctx, rdb, []string{stream + ":health", HealthKey(stream)}).Int64(); err != nil {
		return u, fmt.Errorf("move the health reports of %s: %w", stream, err)
	}
	index := stream + ":sent"
	old, err := rdb.ZRangeWithScores(ctx, index, 0, -1).Result()
	if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return u, fmt.Errorf("read the old dedup index of %s: %w", stream, err)
	}
	if len(old) == 0 {
		return u, nil
	}
	keys := []string{dedupKey(stream), dedupExpiryKey(stream), index}
	args := make([]any, 0, len(old))
	for _, z := range old {
		name, _ := z.Member.(string)
		if !strings.HasPrefix(name, index+":") {
			continue // not one of its hashes: never delete what is not ours
		}
		keys = append(keys, name)
		args = append(args, int64(z.Score))
	}
	if u.DedupRecords, err = moveDedupScript.Run(ctx, rdb, keys, args...).Int64(); err != nil {
		return u, fmt.Errorf("move the dedup records of %s: %w", stream, err)
	}
	return u, nil
}
