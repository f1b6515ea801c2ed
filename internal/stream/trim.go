package stream

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/internal/backoff"
)

// luaIDLess compares two entry IDs in Lua (strings "ms-seq").
const luaIDLess = `
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then ms, seq = id, 0 end
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
`

// trimScript trims the stream below the oldest entry that some consumer
// group still needs: the group's oldest pending entry, or else its
// last-delivered entry (everything after it is unread). A stream without
// groups is not trimmed: a group created later from ID 0 must find all.
// Trimming is approximate (~): Redis removes whole nodes only, so it may keep
// a few more entries, never fewer. Atomic, so no group can move backwards
// in between.
//
// KEYS[1] stream. Returns {entries trimmed, the MINID used or ""}.
var trimScript = redis.NewScript(luaIDLess + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, ''} end
local minid = nil
for _, g in ipairs(groups) do
  local info = fields(g)
  local need = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', KEYS[1], info['name'])
    if summary[2] and less(summary[2], need) then need = summary[2] end
  end
  if minid == nil or less(need, minid) then minid = need end
end
if minid == '0-0' then return {0, minid} end
-- Approximate trimming removes at most 100 nodes per call (its default
-- LIMIT); a long backlog needs a few calls. Bounded, so one script never
-- blocks Redis for long.
local total = 0
for _ = 1, 20 do
  local n = redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
  total = total + n
  if n == 0 then break end
end
return {total, minid}
`)

// Trim removes the entries every consumer group is done with (see
// trimScript) and returns how many it removed.
func Trim(ctx context.Context, rdb redis.Scripter, stream string) (int64, error) {
	res, err := trimScript.Run(ctx, rdb, []string{stream}).Slice()
	if err != nil {
		return 0, fmt.Errorf("trim %s: %w", stream, err)
	}
	n, _ := res[0].(int64)
	return n, nil
}

// TrimLog logs the outcomes of a process's trims by their changes: an
// Error when trimming starts failing, an Info line when it works again,
// Debug in between, so that a trim that keeps failing (an ACL that forbids
// the script or XTRIM, a read-only replica) is one line that says so rather
// than one per attempt. A stream nobody can trim grows until maxmemory;
// callers count every failure in their errors_total metric with kind
// "trim". The zero value is ready; it is safe for concurrent use.
type TrimLog struct {
	// Gate, if set, is shared with the process's other loops that reach
	// Redis: the failure is logged at Error only if it allows.
	Gate *backoff.Gate

	failing atomic.Bool
	quiet   atomic.Bool
}

// Failed logs a failed trim; prefix names the component ("relay").
func (l *TrimLog) Failed(ctx context.Context, logger *slog.Logger, prefix string, err error) {
	if l.failing.CompareAndSwap(false, true) {
		level := l.Gate.Level(slog.LevelError)
		l.quiet.Store(level != slog.LevelError)
		logger.Log(ctx, level, prefix+": trimming the stream failed; it keeps every entry until trimming works again",
			slog.String("err", err.Error()))
		return
	}
	logger.DebugContext(ctx, prefix+": trimming the stream still fails", slog.String("err", err.Error()))
}

// OK records a trim that worked, and logs it if the last one failed.
func (l *TrimLog) OK(ctx context.Context, logger *slog.Logger, prefix string) {
	if l.failing.CompareAndSwap(true, false) {
		level := slog.LevelInfo
		if l.quiet.Load() {
			level = slog.LevelDebug
		}
		logger.Log(ctx, level, prefix+": trimming the stream works again")
	}
}

// liveScript tells, for each entry ID, whether the entry still awaits a
// consumer of the group: it exists and is either pending in the group or not
// yet delivered to it (after its last-delivered ID, or the group does not
// exist yet). An entry that is gone (Redis restarted empty, stream deleted,
// trimmed) or was acknowledged without its job being finished is not live.
//
// KEYS[1] stream. ARGV[1] group, ARGV[2..] entry IDs. Returns 1 or 0 per ID.
var liveScript = redis.NewScript(luaIDLess + `
local out = {}
local n = #ARGV - 1
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 1, n do out[i] = 0 end
  return out
end
local last = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = fields(g)
  if info['name'] == ARGV[1] then last = info['last-delivered-id'] end
end
for i = 1, n do
  local id = ARGV[i + 1]
  local r = redis.pcall('XRANGE', KEYS[1], id, id)
  if type(r) ~= 'table' or r.err or #r == 0 then
    out[i] = 0
  elseif last == nil or less(last, id) then
    out[i] = 1
  else
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    if #p > 0 then out[i] = 1 else out[i] = 0 end
  end
end
return out
`)

// Live reports, for each entry ID, whether the entry still awaits a
// consumer of the group (see liveScript).
func Live(ctx context.Context, rdb redis.Scripter, stream, group string, ids []string) ([]bool, error) {
	args := make([]any, 0, len(ids)+1)
	args = append(args, group)
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := liveScript.Run(ctx, rdb, []string{stream}, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("check entries of %s: %w", stream, err)
	}
	live := make([]bool, len(ids))
	for i := range live {
		live[i] = i < len(res) && res[i] == 1
	}
	return live, nil
}
