package stream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
)

// publishScript adds a batch of jobs to the stream, at most once per job and
// attempt, in one round trip.
//
// The relay XADDs inside its PostgreSQL transaction. If it dies, or the COMMIT
// fails, after the XADD, the jobs stay pending_review with the same attempt
// number and the next claim publishes them again. So the script records the
// entry ID of every (job, attempt) it adds and returns the recorded ID instead
// of adding a second entry.
//
// Records live in hashes, one per minute: <stream>:sent:<minute>, each
// expiring DEDUP_TTL after its minute ends (the longest TTL of any relay
// that wrote to it). The sorted set <stream>:sent indexes the hashes that
// still live, by expiry, so a lookup reads only those, whatever the TTL, and
// relays configured with different TTLs see each other's records. Once the
// relay has committed a batch, no claim can publish those (job, attempt)
// pairs again, so its next call deletes their records ("forget"): the hashes
// hold only batches in flight or abandoned by a dead relay, not every job of
// the window, and a long TTL costs no memory in normal operation.
//
// KEYS[1] stream, KEYS[2] index (sorted set), KEYS[3] hash prefix.
// ARGV[1] TTL in ms; ARGV[2] number of jobs n; ARGV[3] enqueued_at;
// ARGV[4] number of fields to forget m; ARGV[5 .. 4+m] fields to forget;
// then the n jobs' dedup fields (job_id:attempt); then w values per job:
// job_id, site, title, company, job_url, attempt, and with w = 8 priority
// and tenant, a NULL column sent as a NUL byte (which PostgreSQL text
// cannot hold) and left out of the entry; the last argument is w. A batch
// without priorities or tenants is sent with w = 6: every job costs few
// arguments and no table work in the script (the arguments alone are a
// third of its time), and its entries are what they were before either
// existed.
//
// Returns {id_1, ..., id_n}.
var publishScript = redis.NewScript(`
local stream, index, prefix = KEYS[1], KEYS[2], KEYS[3]
local width = 60000
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local enqueued = ARGV[3]
local m = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local live = redis.call('ZRANGE', index, 0, -1)

-- Forget the batch this relay committed last.
if m > 0 then
  for _, key in ipairs(live) do
    local i = 5
    while i <= 4 + m do
      local last = math.min(i + 999, 4 + m)
      redis.call('HDEL', key, unpack(ARGV, i, last))
      i = last + 1
    end
  end
end

local fbase = 5 + m -- the dedup fields, n of them
local base = fbase + n -- then w values per job
local w = tonumber(ARGV[#ARGV])
local found = {}
for _, key in ipairs(live) do
  local s = 0
  while s < n do
    local e = math.min(s + 1000, n)
    local r = redis.call('HMGET', key, unpack(ARGV, fbase + s, fbase + e - 1))
    for x = 1, #r do
      if r[x] then found[s + x] = r[x] end
    end
    s = e
  end
end

local NULL = '\0' -- PostgreSQL text never holds a NUL byte
local ids = {}
local record = {}
for j = 0, n - 1 do
  local o = base + j * w
  local id = found[j + 1]
  if not id then
    local site, title, company, url = ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4]
    local prio, tenant = NULL, NULL
    if w == 8 then prio, tenant = ARGV[o + 6], ARGV[o + 7] end
    if site ~= NULL and title ~= NULL and company ~= NULL and url ~= NULL and prio == NULL and tenant == NULL then
      id = redis.call('XADD', stream, '*', 'job_id', ARGV[o], 'site', site, 'title', title,
        'company', company, 'job_url', url, 'attempt', ARGV[o + 5], 'enqueued_at', enqueued)
    elseif site ~= NULL and title ~= NULL and company ~= NULL and url ~= NULL and tenant == NULL then
      id = redis.call('XADD', stream, '*', 'job_id', ARGV[o], 'site', site, 'title', title,
        'company', company, 'job_url', url, 'attempt', ARGV[o + 5], 'enqueued_at', enqueued,
        'priority', prio)
    elseif site ~= NULL and title ~= NULL and company ~= NULL and url ~= NULL and prio == NULL then
      id = redis.call('XADD', stream, '*', 'job_id', ARGV[o], 'site', site, 'title', title,
        'company', company, 'job_url', url, 'attempt', ARGV[o + 5], 'enqueued_at', enqueued,
        'tenant', tenant)
    else
      local args = {stream, '*', 'job_id', ARGV[o]}
      local names = {'site', 'title', 'company', 'job_url'}
      for k = 1, 4 do
        if ARGV[o + k] ~= NULL then
          args[#args + 1] = names[k]
          args[#args + 1] = ARGV[o + k]
        end
      end
      args[#args + 1] = 'attempt'
      args[#args + 1] = ARGV[o + 5]
      args[#args + 1] = 'enqueued_at'
      args[#args + 1] = enqueued
      if prio ~= NULL then
        args[#args + 1] = 'priority'
        args[#args + 1] = prio
      end
      if tenant ~= NULL then
        args[#args + 1] = 'tenant'
        args[#args + 1] = tenant
      end
      id = redis.call('XADD', unpack(args))
    end
    record[#record + 1] = ARGV[fbase + j]
    record[#record + 1] = id
  end
  ids[j + 1] = id
end

if #record > 0 then
  local minute = math.floor(now / width)
  local cur = prefix .. minute
  local pttl = redis.call('PTTL', cur)
  if pttl == -2 then
    -- A value longer than hash-max-listpack-value (64 by default) makes
    -- Redis keep the hash as a hash table from the start: in its compact
    -- listpack form every field lookup scans the whole hash, and a few
    -- relays' batches in flight make that quadratic.
    redis.call('HSET', cur, '~', string.rep('~', 1024))
  end
  local s = 1
  while s <= #record do
    local e = math.min(s + 1999, #record)
    redis.call('HSET', cur, unpack(record, s, e))
    s = e + 1
  end
  local expireAt = (minute + 1) * width + ttl
  if pttl < 0 or pttl < expireAt - now then
    redis.call('PEXPIREAT', cur, expireAt)
    redis.call('ZADD', index, 'GT', expireAt, cur)
  end
end
return ids
`)

// DedupRecords names the dedup records of a batch (its job:attempt fields):
// once the batch is committed, the next Publish deletes them.
type DedupRecords struct {
	Fields []string
}

// PublishParams is a batch to publish.
type PublishParams struct {
	Stream     string
	DedupTTL   time.Duration // how long records of an uncommitted batch are kept
	EnqueuedAt string        // RFC 3339, the same for the whole batch
	Jobs       []db.Job
	Forget     DedupRecords // records of the previous committed batch, to delete
}

// PublishResult is the result of Publish.
type PublishResult struct {
	// StreamIDs holds the entry ID of each job, index for index. A job that
	// was published before under the same attempt gets its first entry's ID.
	StreamIDs []string
	// Records names this batch's dedup records, for the Publish after this
	// batch commits to delete.
	Records DedupRecords
}

// Publish adds the jobs to the stream, idempotently per job and attempt, in
// one round trip (see publishScript).
func Publish(ctx context.Context, rdb redis.Scripter, p *PublishParams) (PublishResult, error) {
	n := len(p.Jobs)
	args := make([]any, 0, 5+len(p.Forget.Fields)+9*n)
	args = append(args, p.DedupTTL.Milliseconds(), n, p.EnqueuedAt, len(p.Forget.Fields))
	for _, f := range p.Forget.Fields {
		args = append(args, f)
	}
	fields := make([]string, n)
	attempts := make([]string, n)
	for i := range p.Jobs {
		attempts[i] = strconv.Itoa(int(p.Jobs[i].Attempts) + 1)
		fields[i] = p.Jobs[i].ID + ":" + attempts[i]
		args = append(args, fields[i])
	}
	width := 6
	for i := range p.Jobs {
		if p.Jobs[i].Priority != 0 || p.Jobs[i].Tenant.Valid {
			width = 8
			break
		}
	}
	for i := range p.Jobs {
		j := &p.Jobs[i]
		args = append(args, j.ID, orNUL(j.Site), orNUL(j.Title), orNUL(j.Company), orNUL(j.JobURL), attempts[i])
		if width == 8 {
			priority := "\x00" // 0, the default, is left out of the entry
			if j.Priority != 0 {
				priority = strconv.Itoa(int(j.Priority))
			}
			args = append(args, priority, orNUL(j.Tenant))
		}
	}
	args = append(args, width)
	ids, err := publishScript.Run(ctx, rdb, []string{p.Stream, dedupIndex(p.Stream), dedupIndex(p.Stream) + ":"}, args...).StringSlice()
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %d jobs to %s: %w", n, p.Stream, err)
	}
	if len(ids) != n {
		return PublishResult{}, fmt.Errorf("publish %d jobs to %s: script returned %d IDs", n, p.Stream, len(ids))
	}
	return PublishResult{StreamIDs: ids, Records: DedupRecords{Fields: fields}}, nil
}

// orNUL is a column's value, or a NUL byte for NULL (see publishScript).
func orNUL(t pgtype.Text) string {
	if !t.Valid {
		return "\x00"
	}
	return t.String
}

// EntrySize is the bytes a job's entry holds in field values, to compare
// with a size limit before publishing.
func EntrySize(j *db.Job, enqueuedAt string) int {
	n := len(j.ID) + len(j.Site.String) + len(j.Title.String) + len(j.Company.String) +
		len(j.JobURL.String) + len(enqueuedAt) + 4
	if j.Priority != 0 {
		n += 6
	}
	return n + len(j.Tenant.String)
}
