// Package inspect reads the state of a jobrelay pipeline: jobs by status,
// the backlog in the table, the stream, its consumer groups and their
// consumers, the dead letters, and the problems its components report. It
// is what `jobrelay status` prints and the gauges of the metrics endpoint
// export, for a program that embeds the relay and the consumer to read
// (Take) or export (Collector) itself.
package inspect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/metrics"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Snapshot is the state of a pipeline at one moment.
type Snapshot struct {
	TakenAt time.Time `json:"taken_at"`
	// Jobs counts jobs by status; nil unless asked for (it reads the
	// whole table).
	Jobs map[string]int64 `json:"jobs,omitempty"`
	// JobsEstimated lists the statuses whose count in Jobs is PostgreSQL's
	// estimate: reviewed and archived on a table of millions (see
	// db.ReadJobCounts).
	JobsEstimated []string `json:"jobs_estimated,omitempty"`
	Backlog       Backlog  `json:"backlog"`
	Stream        Stream   `json:"stream"`
	Groups        []Group  `json:"groups"`
	// DeadLetters is the length of the dead-letter stream: the jobs still
	// failed (retry --failed and late successes remove their jobs' dead
	// letters), and malformed entries that name no job.
	DeadLetters int64 `json:"dead_letters"`
	// Partitions holds each partition's stream, groups and dead letters,
	// when the pipeline has more than one.
	Partitions []Partition `json:"partitions,omitempty"`
	// Health lists the problems the pipeline's components report (a
	// consumer that cannot record its results...), reports of processes
	// that stopped refreshing them left out.
	Health []HealthReport `json:"health"`
}

// HealthReport is a problem a component of the pipeline reports: one that
// keeps it from making progress, such as a consumer that cannot record its
// results.
type HealthReport struct {
	// Component names the reporter, such as "consumer <name>".
	Component string `json:"component,omitempty"`
	// Problem says what is wrong.
	Problem string `json:"problem"`
	// Since is when the problem began.
	Since time.Time `json:"since"`
	// ReportedAt is when the report was last refreshed.
	ReportedAt time.Time `json:"reported_at"`
}

// Backlog is the unfinished work in the table.
type Backlog struct {
	Pending              int64     `json:"pending"`
	OldestPendingAt      time.Time `json:"oldest_pending_at,omitzero"`
	OldestPendingAgeSecs float64   `json:"oldest_pending_age_seconds"`
	InReview             int64     `json:"in_review"`
	OldestInReviewAt     time.Time `json:"oldest_in_review_at,omitzero"`
	// InReviewUntracked counts the in_review jobs without the relay's
	// bookkeeping (see db.Backlog); OldestInReviewAt counts them by
	// updated_at.
	InReviewUntracked int64 `json:"in_review_untracked"`
	// InReviewByStream counts in_review jobs by the stream they were
	// published to ("" for none recorded); nil unless Counts was asked for.
	// Only the relays of a job's stream re-enqueue it if its entry is lost.
	InReviewByStream map[string]int64 `json:"in_review_by_stream,omitempty"`
	// ByPriority and ByTenant break the pending jobs down by priority
	// (the MaxPriorities highest, highest first) and by tenant (the
	// MaxTenants with most pending jobs), the rest summed as "other".
	ByPriority []Level `json:"by_priority"`
	ByTenant   []Level `json:"by_tenant"`
}

// Level is the pending work of one priority or tenant.
type Level struct {
	// Priority is the level's priority (of ByPriority); Tenant its tenant
	// (of ByTenant), "default" for jobs without one. Both are "other" for
	// the levels beyond the cap, summed.
	Priority             string    `json:"priority,omitempty"`
	Tenant               string    `json:"tenant,omitempty"`
	Pending              int64     `json:"pending"`
	OldestPendingAt      time.Time `json:"oldest_pending_at,omitzero"`
	OldestPendingAgeSecs float64   `json:"oldest_pending_age_seconds"`
}

// Stream describes the review stream.
type Stream struct {
	Name         string `json:"name"`
	Exists       bool   `json:"exists"`
	Length       int64  `json:"length"`
	FirstID      string `json:"first_id,omitempty"`
	LastID       string `json:"last_id,omitempty"`
	EntriesAdded int64  `json:"entries_added"`
}

// Group describes a consumer group of the stream.
type Group struct {
	Name            string `json:"name"`
	Pending         int64  `json:"pending"`
	Lag             int64  `json:"lag"` // -1 when Redis cannot tell
	LastDeliveredID string `json:"last_delivered_id"`
	// EntriesRead counts the entries ever delivered to the group (Redis
	// 7's entries-read); EntriesRead - Pending is what it finished, a
	// counter whose rate is the group's throughput.
	EntriesRead int64 `json:"entries_read"`
	// OldestPendingID is the oldest entry delivered and not yet
	// acknowledged; OldestPendingAt is when it was added to the stream,
	// and OldestPendingAge the time since: its wait in the stream before
	// its first delivery and its retries included, so an old backlog
	// being delivered makes it large. It is not a measure of a stuck
	// delivery: MostIdle is.
	OldestPendingID  string    `json:"oldest_pending_id,omitempty"`
	OldestPendingAt  time.Time `json:"oldest_pending_at,omitzero"`
	OldestPendingAge float64   `json:"oldest_pending_age_seconds"`
	// MostIdle is the pending entry delivered longest ago; nil when none
	// is pending.
	MostIdle  *PendingEntry `json:"most_idle,omitempty"`
	Consumers []Consumer    `json:"consumers"`
}

// PendingEntry is an entry delivered to a group and not yet acknowledged.
type PendingEntry struct {
	ID string `json:"id"`
	// Consumer holds it.
	Consumer string `json:"consumer"`
	// Deliveries counts its deliveries that count toward MaxDeliveries.
	Deliveries int64 `json:"deliveries"`
	// DeliveredAt is when it was last delivered, or its claim refreshed
	// by a consumer whose handler runs long (XPENDING's idle time), and
	// IdleSecs the time since: how long it has waited for a result.
	DeliveredAt time.Time `json:"delivered_at"`
	IdleSecs    float64   `json:"idle_seconds"`
}

// Consumer describes a member of a group.
type Consumer struct {
	Name    string  `json:"name"`
	Pending int64   `json:"pending"`
	Idle    float64 `json:"idle_seconds"` // since it last read or claimed
}

// streamDefault is relay.StreamDefault and consumer.StreamDefault.
const streamDefault = "job_review"

// Options says what Take reads.
type Options struct {
	// Stream is the pipeline's stream. Defaults to "job_review".
	Stream string
	// Partitions is the number of streams the pipeline spreads jobs over
	// (STREAM_PARTITIONS); 0 means 1. With more than one, the snapshot's
	// Stream, Groups and DeadLetters sum up the partitions, and Partitions
	// holds each one.
	Partitions int
	// Counts asks for jobs by status: a count of the whole table, or on a
	// table of millions, estimates of the reviewed and archived counts.
	Counts bool
}

// Take reads a snapshot: two queries on the partial indexes (plus counts
// by status and of in_review jobs by stream if asked, all in one read-only
// transaction), and a few Redis round trips.
func Take(ctx context.Context, pool *pgxpool.Pool, rdb redis.UniversalClient, opts Options) (*Snapshot, error) {
	s := &Snapshot{TakenAt: time.Now(), Stream: Stream{Name: cmp.Or(opts.Stream, streamDefault)}}
	if !opts.Counts {
		if err := readTable(ctx, pool, s, false); err != nil {
			return nil, err
		}
	} else {
		// One moment of the table, so that the counts by status and the
		// backlog agree (a page shows them side by side).
		err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			return readTable(ctx, tx, s, true)
		})
		if err != nil {
			return nil, err
		}
	}
	if err := readStreams(ctx, rdb, s, opts.Partitions); err != nil {
		return nil, err
	}
	reports, err := stream.Problems(ctx, rdb, s.Stream.Name, s.TakenAt, stream.HealthStaleAfter)
	if err != nil {
		return nil, err
	}
	s.Health = make([]HealthReport, 0, len(reports))
	for _, r := range reports {
		s.Health = append(s.Health, HealthReport(r))
	}
	return s, nil
}

// Partition is one stream of a partitioned pipeline.
type Partition struct {
	Stream      Stream  `json:"stream"`
	Groups      []Group `json:"groups"`
	DeadLetters int64   `json:"dead_letters"`
}

// readStreams reads the pipeline's streams: the one stream, or each
// partition and their sums.
func readStreams(ctx context.Context, rdb redis.UniversalClient, s *Snapshot, partitions int) error {
	names := stream.Partitions(s.Stream.Name, partitions)
	if len(names) == 1 {
		return readStream(ctx, rdb, s)
	}
	base := s.Stream.Name
	// Dead letters of the time before partitions stay in the base stream's
	// dead-letter stream until retried or deleted: they count too.
	old, err := rdb.XLen(ctx, stream.DeadLetterKey(base)).Result()
	if err != nil {
		return fmt.Errorf("read dead letters of %s: %w", base, err)
	}
	s.DeadLetters = old
	byName := map[string]int{}
	s.Groups = []Group{}
	for _, name := range names {
		one := &Snapshot{TakenAt: s.TakenAt, Stream: Stream{Name: name}}
		if err := readStream(ctx, rdb, one); err != nil {
			return err
		}
		s.Partitions = append(s.Partitions, Partition{Stream: one.Stream, Groups: one.Groups, DeadLetters: one.DeadLetters})
		s.DeadLetters += one.DeadLetters
		s.Stream.Exists = s.Stream.Exists || one.Stream.Exists
		s.Stream.Length += one.Stream.Length
		s.Stream.EntriesAdded += one.Stream.EntriesAdded
		for _, g := range one.Groups {
			i, ok := byName[g.Name]
			if !ok {
				byName[g.Name] = len(s.Groups)
				g.Consumers = slices.Clone(g.Consumers)
				s.Groups = append(s.Groups, g)
				continue
			}
			sum := &s.Groups[i]
			sum.Pending += g.Pending
			if sum.Lag >= 0 && g.Lag >= 0 {
				sum.Lag += g.Lag
			} else {
				sum.Lag = -1
			}
			sum.LastDeliveredID = "" // one per partition: see Partitions
			if g.OldestPendingID != "" && (sum.OldestPendingAt.IsZero() || g.OldestPendingAt.Before(sum.OldestPendingAt)) {
				sum.OldestPendingID, sum.OldestPendingAt, sum.OldestPendingAge = g.OldestPendingID, g.OldestPendingAt, g.OldestPendingAge
			}
			if g.MostIdle != nil && (sum.MostIdle == nil || g.MostIdle.DeliveredAt.Before(sum.MostIdle.DeliveredAt)) {
				sum.MostIdle = g.MostIdle
			}
			sum.Consumers = mergeConsumers(sum.Consumers, g.Consumers)
		}
	}
	s.Stream.Name = base
	return nil
}

// mergeConsumers adds up a consumer's pending entries over partitions; its
// idle time is the shortest.
func mergeConsumers(into, more []Consumer) []Consumer {
	for _, c := range more {
		i := slices.IndexFunc(into, func(x Consumer) bool { return x.Name == c.Name })
		if i < 0 {
			into = append(into, c)
			continue
		}
		into[i].Pending += c.Pending
		into[i].Idle = min(into[i].Idle, c.Idle)
	}
	return into
}

// readTable reads the jobs table's part of a snapshot: the backlog, and
// the counts if asked.
func readTable(ctx context.Context, q db.DBTX, s *Snapshot, counts bool) error {
	if counts {
		c, err := db.ReadJobCounts(ctx, q)
		if err != nil {
			return err
		}
		s.Jobs, s.JobsEstimated = c.ByStatus, c.Estimated
	}
	b, err := db.ReadBacklog(ctx, q)
	if err != nil {
		return err
	}
	s.Backlog = Backlog{Pending: b.Pending, OldestPendingAt: b.OldestPending, InReview: b.InReview, OldestInReviewAt: b.OldestInReview,
		InReviewUntracked: b.InReviewUntracked}
	if counts {
		byStream, err := db.CountInReviewByStream(ctx, q)
		if err != nil {
			return err
		}
		s.Backlog.InReviewByStream = byStream
	}
	if !b.OldestPending.IsZero() {
		s.Backlog.OldestPendingAgeSecs = s.TakenAt.Sub(b.OldestPending).Seconds()
	}
	return readLevels(ctx, q, s)
}

// readLevels reads the pending jobs by priority and tenant, with bounded
// labels: at most metrics.MaxPriorityLabels and metrics.MaxTenantLabels
// of each, the rest as "other".
func readLevels(ctx context.Context, q db.DBTX, s *Snapshot) error {
	byPriority, byTenant, err := db.ReadLevels(ctx, q, metrics.MaxPriorityLabels, metrics.MaxTenantLabels)
	if err != nil {
		return err
	}
	level := func(l *db.Level) Level {
		out := Level{Pending: l.Pending, OldestPendingAt: l.OldestPending}
		if !l.OldestPending.IsZero() {
			out.OldestPendingAgeSecs = s.TakenAt.Sub(l.OldestPending).Seconds()
		}
		return out
	}
	s.Backlog.ByPriority = make([]Level, 0, len(byPriority))
	for i := range byPriority {
		l := level(&byPriority[i])
		l.Priority = metrics.OtherLabel
		if !byPriority[i].Other {
			l.Priority = metrics.PriorityLabel(byPriority[i].Priority)
		}
		s.Backlog.ByPriority = append(s.Backlog.ByPriority, l)
	}
	s.Backlog.ByTenant = make([]Level, 0, len(byTenant))
	for i := range byTenant {
		l := level(&byTenant[i])
		l.Tenant = metrics.OtherLabel
		if !byTenant[i].Other {
			l.Tenant = metrics.TenantLabel(byTenant[i].Tenant)
		}
		s.Backlog.ByTenant = append(s.Backlog.ByTenant, l)
	}
	return nil
}

func readStream(ctx context.Context, rdb redis.UniversalClient, s *Snapshot) error {
	name := s.Stream.Name
	dead, err := rdb.XLen(ctx, stream.DeadLetterKey(name)).Result()
	if err != nil {
		return fmt.Errorf("read dead-letter stream: %w", err)
	}
	s.DeadLetters = dead
	info, err := rdb.XInfoStream(ctx, name).Result()
	if stream.IsNoSuchKey(err) {
		s.Groups = []Group{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read stream %s: %w", name, err)
	}
	s.Stream.Exists = true
	s.Stream.Length = info.Length
	s.Stream.FirstID = info.FirstEntry.ID
	s.Stream.LastID = info.LastEntry.ID
	s.Stream.EntriesAdded = info.EntriesAdded

	groups, err := rdb.XInfoGroups(ctx, name).Result()
	if err != nil {
		return fmt.Errorf("read groups of %s: %w", name, err)
	}
	s.Groups = make([]Group, 0, len(groups))
	for _, g := range groups {
		grp := Group{Name: g.Name, Pending: g.Pending, Lag: g.Lag, LastDeliveredID: g.LastDeliveredID, EntriesRead: g.EntriesRead,
			Consumers: []Consumer{}}
		if g.Pending > 0 {
			p, err := rdb.XPending(ctx, name, g.Name).Result()
			if err != nil {
				return fmt.Errorf("read pending entries of %s: %w", g.Name, err)
			}
			grp.OldestPendingID = p.Lower
			if id, ok := stream.ParseID(p.Lower); ok {
				grp.OldestPendingAt = time.UnixMilli(int64(id.MS))
				grp.OldestPendingAge = s.TakenAt.Sub(grp.OldestPendingAt).Seconds()
			}
			e, err := mostIdle(ctx, rdb, name, g.Name)
			if err != nil {
				return err
			}
			if e != nil {
				grp.MostIdle = &PendingEntry{ID: e.ID, Consumer: e.Consumer, Deliveries: e.RetryCount,
					DeliveredAt: s.TakenAt.Add(-e.Idle), IdleSecs: e.Idle.Seconds()}
			}
		}
		consumers, err := rdb.XInfoConsumers(ctx, name, g.Name).Result()
		if err != nil {
			return fmt.Errorf("read consumers of %s: %w", g.Name, err)
		}
		for _, c := range consumers {
			grp.Consumers = append(grp.Consumers, Consumer{Name: c.Name, Pending: c.Pending, Idle: c.Idle.Seconds()})
		}
		s.Groups = append(s.Groups, grp)
	}
	return nil
}

// mostIdlePage is how many pending entries one XPENDING call of mostIdle
// returns at most.
const mostIdlePage = 100

// mostIdle returns the group's pending entry delivered longest ago, or nil
// if none is pending. XPENDING lists entries in ID order, not by idle
// time, so it pages through the pending entries list, asking each page
// only for entries more idle than the most idle one found so far (the
// IDLE filter): Redis scans the list once, few entries travel, and one
// round trip is usual, since entries are mostly delivered in ID order and
// the first is the most idle.
func mostIdle(ctx context.Context, rdb redis.UniversalClient, name, group string) (*redis.XPendingExt, error) {
	var best *redis.XPendingExt
	start := "-"
	for {
		args := &redis.XPendingExtArgs{Stream: name, Group: group, Start: start, End: "+", Count: mostIdlePage}
		if best != nil {
			args.Idle = best.Idle + time.Millisecond // IDLE is in ms, and at least
		}
		page, err := rdb.XPendingExt(ctx, args).Result()
		if err != nil {
			return nil, fmt.Errorf("read pending entries of %s: %w", group, err)
		}
		for i := range page {
			if best == nil || page[i].Idle > best.Idle {
				best = &page[i]
			}
		}
		if len(page) < mostIdlePage {
			return best, nil
		}
		start = "(" + page[len(page)-1].ID
	}
}
