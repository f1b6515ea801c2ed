package stream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
)

// publishScript adds a batch of jobs to a stream, at most once per job and
// attempt, in one round trip.
//
// The relay XADDs inside its PostgreSQL transaction. If it dies, or the COMMIT
// fails, after the XADD, the jobs stay pending_review with the same attempt
// number and the next claim publishes them again. So the script records the
// entry ID of every (job, attempt) it adds and returns the recorded ID instead
// of adding a second entry.
//
// Records live in the hash {<stream>}:sent (field job_id:attempt, value the
// entry ID). Each call's new records are a batch: the hash also holds, under
// the field "#" plus the batch's first record's field, the batch's fields
// separated by spaces, and the sorted set {<stream>}:sent:exp holds when
// that batch expires, DEDUP_TTL after it was written. Each call deletes the
// expired batches (a bounded number per call). One expiry per batch, not per
// record, keeps the sorted set as small as the number of batches in flight:
// per-record expiries made it the script's largest cost. Members of the
// sorted set without the "#" are single records of an earlier version of
// the script (see UpgradeKeys); they expire alone.
//
// Relays configured with different TTLs see each other's records. Once the
// relay has committed a batch, no claim can publish those (job, attempt)
// pairs again, so its next call deletes their records ("forget"): the hash
// holds only batches in flight or abandoned by a dead relay, not every job
// of the window, and a long TTL costs no memory in normal operation. The
// script touches these three keys only, all in the stream's hash slot.
//
// KEYS[1] stream, KEYS[2] records (hash), KEYS[3] expiries (sorted set).
// ARGV[1] TTL in ms; ARGV[2] number of jobs n; ARGV[3] enqueued_at;
// ARGV[4] number of fields to forget m; ARGV[5 .. 4+m] fields to forget
// (records, and the "#" fields of their batches); then the n jobs' dedup
// fields (job_id:attempt); then w values per job: job_id, site, title,
// company, job_url, attempt, and with w = 8 priority and tenant, a NULL
// column sent as a NUL byte (which PostgreSQL text cannot hold) and left
// out of the entry; the last argument is w. A batch without priorities or
// tenants is sent with w = 6: every job costs few arguments and no table
// work in the script (the arguments alone are a third of its time), and its
// entries are what they were before either existed.
//
// Returns {id_1, ..., id_n, batch}: batch is the "#" field of this call's
// new records, or "" if it added none.
var publishScript = redis.NewScript(publishLua)

const publishLua = `
local stream, sent, exp = KEYS[1], KEYS[2], KEYS[3]
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local enqueued = ARGV[3]
local m = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function hdel(list, from, to)
  local i = from
  while i <= to do
    local last = math.min(i + 999, to)
    redis.call('HDEL', sent, unpack(list, i, last))
    i = last + 1
  end
end

-- Batches past their TTL (a bounded number per call), with their records.
local old = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(old) do
  if string.byte(member, 1) == 35 then -- '#': a batch
    local list = redis.call('HGET', sent, member)
    if list then
      local fields = {}
      for f in string.gmatch(list, '[^ ]+') do fields[#fields + 1] = f end
      hdel(fields, 1, #fields)
    end
  end
  redis.call('HDEL', sent, member)
end
if #old > 0 then redis.call('ZREM', exp, unpack(old)) end

-- The batches this relay committed last.
if m > 0 then
  hdel(ARGV, 5, 4 + m)
  local batches = {}
  for i = 5, 4 + m do
    if string.byte(ARGV[i], 1) == 35 then batches[#batches + 1] = ARGV[i] end
  end
  if #batches > 0 then redis.call('ZREM', exp, unpack(batches)) end
end

local fbase = 5 + m -- the dedup fields, n of them
local base = fbase + n -- then w values per job
local w = tonumber(ARGV[#ARGV])
local found = {}
if n > 0 and redis.call('EXISTS', sent) == 1 then
  local s = 0
  while s < n do
    local e = math.min(s + 1000, n)
    local r = redis.call('HMGET', sent, unpack(ARGV, fbase + s, fbase + e - 1))
    for x = 1, #r do
      if r[x] then found[s + x] = r[x] end
    end
    s = e
  end
end

local NULL = '\0' -- PostgreSQL text never holds a NUL byte
local ids = {}
local record, fields = {}, {}
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
    fields[#fields + 1] = ARGV[fbase + j]
  end
  ids[j + 1] = id
end

local batch = ''
if #record > 0 then
  if redis.call('EXISTS', sent) == 0 then
    -- A value longer than hash-max-listpack-value (64 by default) makes
    -- Redis keep the hash as a hash table from the start: in its compact
    -- listpack form every field lookup scans the whole hash, and a few
    -- relays' batches in flight make that quadratic.
    redis.call('HSET', sent, '~', string.rep('~', 1024))
  end
  local s = 1
  while s <= #record do
    local e = math.min(s + 1999, #record)
    redis.call('HSET', sent, unpack(record, s, e))
    s = e + 1
  end
  batch = '#' .. fields[1]
  redis.call('HSET', sent, batch, table.concat(fields, ' '))
  redis.call('ZADD', exp, now + ttl, batch)
  -- Both keys outlive their longest record, and go when it has expired.
  for _, k in ipairs({sent, exp}) do
    local pttl = redis.call('PTTL', k)
    if pttl < ttl then redis.call('PEXPIRE', k, ttl) end
  end
end
ids[n + 1] = batch
return ids
`

// DedupRecords names the dedup records of a batch (its job:attempt fields,
// and the "#" fields that list them, see publishScript): once the batch is
// committed, the next Publish deletes them.
type DedupRecords struct {
	Fields []string
}

// PublishParams is a batch to publish.
type PublishParams struct {
	// Stream is the pipeline's stream, and Partitions how many streams its
	// jobs are spread over (see Partitions); 0 means 1.
	Stream     string
	Partitions int
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
	// Streams holds the stream (partition) each job went to, index for
	// index.
	Streams []string
	// Records names this batch's dedup records, for the Publish after this
	// batch commits to delete.
	Records DedupRecords
}

// partitionCall is the script call of one partition of a batch.
type partitionCall struct {
	stream string
	jobs   []int // indexes into PublishParams.Jobs
	forget []string
	cmd    *redis.Cmd
}

// Publish adds the jobs to their partitions' streams, idempotently per job
// and attempt (see publishScript). Each partition is one script call; the
// calls of a batch go in one pipeline, which a cluster client sends to
// each node it touches in one round trip.
func Publish(ctx context.Context, rdb redis.UniversalClient, p *PublishParams) (PublishResult, error) {
	n := len(p.Jobs)
	parts := max(p.Partitions, 1)
	names := Partitions(p.Stream, parts)
	calls := make([]partitionCall, parts)
	for i := range calls {
		calls[i].stream = names[i]
	}
	fields := make([]string, n)
	attempts := make([]string, n)
	for i := range p.Jobs {
		attempts[i] = strconv.Itoa(int(p.Jobs[i].Attempts) + 1)
		fields[i] = p.Jobs[i].ID + ":" + attempts[i]
		k := PartitionOf(p.Jobs[i].ID, parts)
		calls[k].jobs = append(calls[k].jobs, i)
	}
	for _, f := range p.Forget.Fields {
		jobID, _, _ := strings.Cut(strings.TrimPrefix(f, "#"), ":")
		k := PartitionOf(jobID, parts)
		calls[k].forget = append(calls[k].forget, f)
	}
	todo := calls[:0]
	for _, c := range calls {
		if len(c.jobs) > 0 || len(c.forget) > 0 {
			todo = append(todo, c)
		}
	}
	runPublish(ctx, rdb, p, todo, fields, attempts)
	res := PublishResult{StreamIDs: make([]string, n), Streams: make([]string, n), Records: DedupRecords{Fields: fields}}
	for _, c := range todo {
		ids, err := c.cmd.StringSlice()
		if err != nil {
			return PublishResult{}, fmt.Errorf("publish %d jobs to %s: %w", len(c.jobs), c.stream, err)
		}
		if len(ids) != len(c.jobs)+1 {
			return PublishResult{}, fmt.Errorf("publish %d jobs to %s: script returned %d values", len(c.jobs), c.stream, len(ids))
		}
		for x, i := range c.jobs {
			res.StreamIDs[i], res.Streams[i] = ids[x], c.stream
		}
		if batch := ids[len(c.jobs)]; batch != "" {
			res.Records.Fields = append(res.Records.Fields, batch)
		}
	}
	return res, nil
}

// runPublish runs the calls' scripts: a single call as Script.Run does, a
// few in one pipeline of EVALSHA, then EVAL for those whose node did not
// know the script yet (NOSCRIPT means it did not run). Each call's result
// and error are in its cmd.
//
// Each call is built as one EVALSHA command and sent with Do: the job's
// strings go in as pointers, which an interface holds without allocating,
// and go-redis writes the command as it is instead of copying it. At 10
// arguments per job, boxing each string and copying the command were a
// third of the bytes the relay allocated per job.
func runPublish(ctx context.Context, rdb redis.UniversalClient, p *PublishParams, calls []partitionCall, fields, attempts []string) {
	nul := "\x00" // a NULL column (see publishScript)
	ttl, enqueued := p.DedupTTL.Milliseconds(), p.EnqueuedAt
	orNUL := func(t *pgtype.Text) *string {
		if !t.Valid {
			return &nul
		}
		return &t.String
	}
	var priorities []string // the non-default priorities, which argv points into
	command := func(c *partitionCall) []any {
		width := 6 // 8 with priority and tenant, when a job of the call has either
		for _, i := range c.jobs {
			if p.Jobs[i].Priority != 0 || p.Jobs[i].Tenant.Valid {
				width = 8
				break
			}
		}
		if width == 8 && priorities == nil {
			priorities = make([]string, len(p.Jobs))
		}
		keys := [...]string{c.stream, dedupKey(c.stream), dedupExpiryKey(c.stream)}
		cmd := make([]any, 0, 3+len(keys)+5+len(c.forget)+(width+1)*len(c.jobs))
		cmd = append(cmd, "evalsha", publishScript.Hash(), len(keys), keys[0], keys[1], keys[2],
			ttl, len(c.jobs), &enqueued, len(c.forget))
		for k := range c.forget {
			cmd = append(cmd, &c.forget[k])
		}
		for _, i := range c.jobs {
			cmd = append(cmd, &fields[i])
		}
		for _, i := range c.jobs {
			j := &p.Jobs[i]
			cmd = append(cmd, &j.ID, orNUL(&j.Site), orNUL(&j.Title), orNUL(&j.Company), orNUL(&j.JobURL), &attempts[i])
			if width == 8 {
				priority := &nul // 0, the default, is left out of the entry
				if j.Priority != 0 {
					priorities[i] = strconv.Itoa(int(j.Priority))
					priority = &priorities[i]
				}
				cmd = append(cmd, priority, orNUL(&j.Tenant))
			}
		}
		return append(cmd, width)
	}
	// asEval turns an EVALSHA command into the EVAL of the same call.
	asEval := func(cmd []any) []any {
		cmd[0], cmd[1] = "eval", publishLua
		return cmd
	}
	noScript := func(c *redis.Cmd) bool { return c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") }
	if len(calls) == 1 {
		cmd := command(&calls[0])
		if calls[0].cmd = rdb.Do(ctx, cmd...); noScript(calls[0].cmd) {
			calls[0].cmd = rdb.Do(ctx, asEval(cmd)...)
		}
		return
	}
	cmds := make([][]any, len(calls))
	pipe := rdb.Pipeline()
	for i := range calls {
		cmds[i] = command(&calls[i])
		calls[i].cmd = pipe.Do(ctx, cmds[i]...)
	}
	_, _ = pipe.Exec(ctx) // errors are per call, below
	var again []int
	for i := range calls {
		if noScript(calls[i].cmd) {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return
	}
	pipe = rdb.Pipeline()
	for _, i := range again {
		calls[i].cmd = pipe.Do(ctx, asEval(cmds[i])...)
	}
	_, _ = pipe.Exec(ctx)
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
