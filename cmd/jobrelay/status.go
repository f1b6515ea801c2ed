package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// errUnhealthy makes `status --check` exit 1 after printing why.
var errUnhealthy = errors.New("unhealthy")

const statusHelp = `Shows the pipeline: jobs by status and the age of the oldest pending one;
the stream's length, first and last entries and entries ever added; each
consumer group with its lag, pending entries and consumers; the dead-letter
stream's length. --json prints the same for scripts.

--check exits 1 (after saying why) when a group lags by more than
--max-lag entries, the oldest pending job is older than --max-pending-age,
a job has been in_review for longer than --max-in-review-age (nothing is
finishing it: no consumer, a reaper refused, another stream's deployment
gone),
a delivered job has waited for its result for longer than
--max-delivery-idle since it was last delivered (its consumer died or is
wedged, and no other takes it over), the dead-letter stream holds more
than --max-dead-letters entries, or a component reports a problem (a consumer that cannot record its results):
for cron and container health checks. It exits 2 when a server cannot be
read.

Dead letters are the jobs still failed: retry --failed removes the dead
letters of the jobs it sends back, and a job reviewed after all loses its
own. Malformed entries (no job to retry) stay until removed with
redis-cli XDEL. Components refresh their problem reports every few seconds
in the hash "{<stream>}:health"; a report older than 30s (its process died)
is ignored.

A group's OLDEST PENDING entry is the oldest by when it was added to the
stream (an old backlog being delivered makes it old); its MOST IDLE entry
is the one delivered longest ago, with no result since: a stuck delivery.

The same names work in redis-cli:
  redis-cli XINFO STREAM job_review
  redis-cli XINFO GROUPS job_review
  redis-cli XINFO CONSUMERS job_review job_review_workers
  redis-cli XRANGE {job_review}:dead - + COUNT 10`

type statusOptions struct {
	JSON           bool
	Check          bool
	MaxLag         int
	MaxPendingAge  time.Duration
	MaxInReviewAge time.Duration
	// MaxDeliveryIdle is the alert JobReviewStuckDelivery's threshold
	// (deploy/alerts.yml): above the longest retry backoff.
	MaxDeliveryIdle time.Duration
	MaxDeadLetters  int
}

type statusCommand struct {
	common commonConfig
	opts   statusOptions
}

func (c *statusCommand) parseFlags(a *app, args []string) error {
	s := newSettings("status", a.env)
	opts := &c.opts
	s.bind(c.common.bindings()...)
	s.bind(&binding{flag: "json", ptr: &opts.JSON, def: false, help: "print JSON"},
		&binding{flag: "check", ptr: &opts.Check, def: false, help: "exit 1 if unhealthy (see the thresholds)"},
		&binding{flag: "max-lag", ptr: &opts.MaxLag, def: 10_000, meta: "N", help: "--check: most entries a group may leave unread", check: intRange(0, 1<<40)},
		&binding{flag: "max-pending-age", ptr: &opts.MaxPendingAge, def: 15 * time.Minute, meta: "DURATION", help: "--check: oldest age a pending job may reach", check: durationAtLeast(0)},
		&binding{flag: "max-in-review-age", ptr: &opts.MaxInReviewAge, def: time.Hour, meta: "DURATION", help: "--check: longest a job may stay in_review (retries with backoff included)", check: durationAtLeast(0)},
		&binding{flag: "max-delivery-idle", ptr: &opts.MaxDeliveryIdle, def: 45 * time.Minute, meta: "DURATION",
			help: "--check: longest a delivered job may wait for its result since its last delivery", check: durationAtLeast(0)},
		&binding{flag: "max-dead-letters", ptr: &opts.MaxDeadLetters, def: 0, meta: "N", help: "--check: most dead letters tolerated", check: intRange(0, 1<<40)})
	return a.parseNoArgs(s, args, "jobrelay status [--json] [--check] [flags]", statusHelp)
}

func (c *statusCommand) run(ctx context.Context, a *app) error {
	common, opts := c.common, c.opts
	cl, err := openClients(ctx, &common, 2, nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	snap, err := inspect.Take(ctx, cl.pool, cl.rdb, inspect.Options{Stream: common.Stream, Partitions: common.Partitions, Counts: true})
	if err != nil {
		if opts.Check {
			fmt.Fprintln(a.stdout, "UNHEALTHY: cannot read the pipeline:", err)
			return &usageError{"status: " + err.Error()}
		}
		return err
	}
	problems := checkHealth(snap, &opts)
	if opts.JSON {
		out := struct {
			*inspect.Snapshot
			Healthy  bool     `json:"healthy"`
			Problems []string `json:"problems"`
		}{snap, len(problems) == 0, append([]string{}, problems...)}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printStatus(a.stdout, snap)
		if opts.Check {
			if len(problems) == 0 {
				fmt.Fprintln(a.stdout, "\nHEALTHY")
			}
			for _, p := range problems {
				fmt.Fprintln(a.stdout, "UNHEALTHY:", p)
			}
		}
	}
	if opts.Check && len(problems) > 0 {
		return errUnhealthy
	}
	return nil
}

// checkHealth lists what --check finds wrong.
func checkHealth(s *inspect.Snapshot, o *statusOptions) []string {
	var problems []string
	for _, g := range s.Groups {
		if g.Lag > int64(o.MaxLag) {
			problems = append(problems, fmt.Sprintf("group %s lags by %d entries (--max-lag %d)", g.Name, g.Lag, o.MaxLag))
		}
	}
	if age := time.Duration(s.Backlog.OldestPendingAgeSecs * float64(time.Second)); s.Backlog.Pending > 0 && age > o.MaxPendingAge {
		problems = append(problems, fmt.Sprintf("the oldest pending job waits for %s (--max-pending-age %s)", age.Round(time.Second), o.MaxPendingAge))
	}
	if !s.Backlog.OldestInReviewAt.IsZero() && s.Backlog.InReview > 0 {
		if age := s.TakenAt.Sub(s.Backlog.OldestInReviewAt); age > o.MaxInReviewAge {
			problems = append(problems, fmt.Sprintf("the oldest in_review job has waited %s for its review (--max-in-review-age %s): are consumers running, and is the reaper able to re-enqueue it?",
				age.Round(time.Second), o.MaxInReviewAge))
		}
	}
	for _, g := range s.Groups {
		if e := g.MostIdle; e != nil {
			if idle := time.Duration(e.IdleSecs * float64(time.Second)); idle > o.MaxDeliveryIdle {
				problems = append(problems, fmt.Sprintf("group %s: entry %s, delivered to %s %s ago, has no result (--max-delivery-idle %s): is that consumer running and its handler finishing?",
					g.Name, e.ID, e.Consumer, idle.Round(time.Second), o.MaxDeliveryIdle))
			}
		}
	}
	if s.DeadLetters > int64(o.MaxDeadLetters) {
		problems = append(problems, fmt.Sprintf("%d dead letters in %s (--max-dead-letters %d); see them with redis-cli XRANGE %s - +, retry with jobrelay retry --failed",
			s.DeadLetters, stream.DeadLetterKey(s.Stream.Name), o.MaxDeadLetters, stream.DeadLetterKey(s.Stream.Name)))
	}
	for _, h := range s.Health {
		problems = append(problems, healthLine(s.TakenAt, h))
	}
	return problems
}

// healthLine says what a component reports, and since when.
func healthLine(now time.Time, h inspect.HealthReport) string {
	line := h.Component + ": " + h.Problem
	if !h.Since.IsZero() {
		line += " (" + since(now, h.Since, "since") + ")"
	}
	return line
}

func printStatus(w io.Writer, s *inspect.Snapshot) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "JOBS\tCOUNT\tOLDEST")
	for _, st := range db.AllStatuses() {
		oldest := ""
		switch st {
		case db.StatusPendingReview:
			oldest = since(s.TakenAt, s.Backlog.OldestPendingAt, "created")
		case db.StatusInReview:
			oldest = since(s.TakenAt, s.Backlog.OldestInReviewAt, "published")
		}
		count := strconv.FormatInt(s.Jobs[st], 10)
		if slices.Contains(s.JobsEstimated, st) {
			count = "~" + count // PostgreSQL's estimate, on a table of millions
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", st, count, oldest)
		if st == db.StatusInReview {
			printInReviewDetail(tw, s)
		}
	}
	printLevels(tw, s)
	fmt.Fprintln(tw)
	if !s.Stream.Exists {
		fmt.Fprintf(tw, "STREAM %s\tnot created yet (the first relay cycle or consumer creates it)\n", s.Stream.Name)
	} else {
		fmt.Fprintln(tw, "STREAM\tLENGTH\tENTRIES ADDED\tFIRST ENTRY\tLAST ENTRY")
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Stream.Name, s.Stream.Length, s.Stream.EntriesAdded,
			entry(s.TakenAt, s.Stream.FirstID), entry(s.TakenAt, s.Stream.LastID))
	}
	fmt.Fprintln(tw)
	if len(s.Groups) == 0 {
		fmt.Fprintln(tw, "GROUPS\tnone yet (the first consumer creates its group)")
	} else {
		fmt.Fprintln(tw, "GROUP\tCONSUMERS\tLAG\tPENDING\tOLDEST PENDING\tMOST IDLE\tLAST DELIVERED")
		for _, g := range s.Groups {
			lag := strconv.FormatInt(g.Lag, 10)
			if g.Lag < 0 {
				lag = "unknown"
			}
			mostIdle := "-"
			if e := g.MostIdle; e != nil {
				mostIdle = e.ID + " (" + since(s.TakenAt, e.DeliveredAt, "delivered") + ")"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", g.Name, len(g.Consumers), lag, g.Pending,
				entry(s.TakenAt, g.OldestPendingID), mostIdle, g.LastDeliveredID)
			for _, c := range g.Consumers {
				fmt.Fprintf(tw, "  %s\t\t\t%d\tidle %s\t\t\n", c.Name, c.Pending, round(time.Duration(c.Idle*float64(time.Second))))
			}
		}
	}
	if len(s.Partitions) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PARTITION\tLENGTH\tLAG\tPENDING\tDEAD LETTERS")
		for _, p := range s.Partitions {
			var lag, pending int64
			for _, g := range p.Groups {
				lag, pending = max(lag, g.Lag), pending+g.Pending
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", p.Stream.Name, p.Stream.Length, lag, pending, p.DeadLetters)
		}
	}
	fmt.Fprintln(tw)
	if len(s.Partitions) > 0 {
		fmt.Fprintf(tw, "DEAD LETTERS\t%d\tin %s\n", s.DeadLetters, stream.DeadLetterKey(s.Stream.Name+":<k>"))
	} else {
		fmt.Fprintf(tw, "DEAD LETTERS\t%d\tin %s\n", s.DeadLetters, stream.DeadLetterKey(s.Stream.Name))
	}
	if len(s.Health) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PROBLEMS REPORTED")
		for _, h := range s.Health {
			fmt.Fprintf(tw, "  %s\n", healthLine(s.TakenAt, h))
		}
	}
}

// printLevels shows the pending jobs by priority and by tenant, when
// there is more than one of either.
func printLevels(w io.Writer, s *inspect.Snapshot) {
	if len(s.Backlog.ByPriority) > 1 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "PRIORITY\tPENDING\tOLDEST")
		for _, l := range s.Backlog.ByPriority {
			fmt.Fprintf(w, "%s\t%d\t%s\n", l.Priority, l.Pending, since(s.TakenAt, l.OldestPendingAt, "created"))
		}
	}
	if len(s.Backlog.ByTenant) > 1 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "TENANT\tPENDING\tOLDEST")
		for _, l := range s.Backlog.ByTenant {
			fmt.Fprintf(w, "%s\t%d\t%s\n", l.Tenant, l.Pending, since(s.TakenAt, l.OldestPendingAt, "created"))
		}
	}
}

// printInReviewDetail shows the in_review jobs that no consumer of this
// stream holds: those without the relay's bookkeeping, and those of other
// streams.
func printInReviewDetail(w io.Writer, s *inspect.Snapshot) {
	if n := s.Backlog.InReviewUntracked; n > 0 {
		fmt.Fprintf(w, "  without a stream entry\t%d\tre-enqueued by the reaper once updated_at is REENQUEUE_AFTER old\n", n)
	}
	streams := slices.Sorted(maps.Keys(s.Backlog.InReviewByStream))
	for _, name := range streams {
		switch {
		case name == "" || name == s.Stream.Name || slices.ContainsFunc(s.Partitions, func(p inspect.Partition) bool { return p.Stream.Name == name }):
		case stream.IsPartition(s.Stream.Name, name):
			fmt.Fprintf(w, "  in stream %s\t%d\ta partition no more (STREAM_PARTITIONS changed): drained by consumers, reaped by relays\n", name, s.Backlog.InReviewByStream[name])
		default:
			fmt.Fprintf(w, "  in stream %s\t%d\treaped by that stream's relays only\n", name, s.Backlog.InReviewByStream[name])
		}
	}
}

// since says how long ago t was.
func since(now, t time.Time, verb string) string {
	if t.IsZero() {
		return ""
	}
	return verb + " " + round(now.Sub(t)) + " ago"
}

// entry shows an entry ID with its age.
func entry(now time.Time, id string) string {
	if id == "" {
		return "-"
	}
	parsed, ok := stream.ParseID(id)
	if !ok {
		return id
	}
	return id + " (" + round(now.Sub(time.UnixMilli(int64(parsed.MS)))) + " ago)"
}

func round(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return strings.TrimSuffix(d.Round(time.Second).String(), "0s")
	}
}
