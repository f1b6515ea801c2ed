package dashboard

import (
	"cmp"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Thresholds of the colours. The bad ones are the defaults of `jobrelay
// status --check`, so that red on the page is what --check fails on.
const (
	pendingAgeWarn  = time.Minute
	pendingAgeBad   = 15 * time.Minute
	inReviewAgeBad  = time.Hour
	deliveryIdleBad = 45 * time.Minute
	lagWarn         = 1_000
	lagBad          = 10_000
)

// Tones, the CSS classes of the status colours.
const (
	toneOK   = "ok"
	toneWarn = "warn"
	toneBad  = "bad"
	toneIdle = "idle"
)

// page is what every page's layout shows.
type page struct {
	Title  string
	Active string // the navigation item of the page
	Prefix string
	Stream string
	Write  bool
	CSRF   string
	// Health is the pill in the header; empty on pages without a snapshot.
	Health, HealthTone string
	// ReadAt is when the state shown was read, for the "read 3s ago" line.
	ReadAt, ReadAtISO string
	// Stale is why the latest read failed, while an older state is shown.
	Stale string
	// Flash is the outcome of an action.
	Flash string
	Body  any
}

func (d *Dashboard) newPage(r *http.Request, title, active string, snap *inspect.Snapshot, readErr error) page {
	p := page{Title: title, Active: active, Prefix: d.cfg.Prefix, Stream: d.cfg.Stream, Write: d.cfg.Write}
	if d.cfg.Write {
		p.CSRF = d.token
	}
	if snap != nil {
		p.HealthTone, p.Health = overallHealth(snap)
		p.ReadAt = "read " + ago(time.Now(), snap.TakenAt)
		p.ReadAtISO = snap.TakenAt.UTC().Format(time.RFC3339)
	}
	if readErr != nil && snap != nil {
		p.Stale = "The latest read failed (" + readErr.Error() + "); this is the state read " + ago(time.Now(), snap.TakenAt) + "."
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("retried")); err == nil && n >= 0 {
		p.Flash = plural(int64(n), "failed job", "failed jobs") + " sent back to pending_review; the relay publishes them again."
	}
	return p
}

// overallHealth is the header's verdict.
func overallHealth(s *inspect.Snapshot) (tone, label string) {
	tone = toneOK
	worse := func(t string) {
		if t == toneBad || t == toneWarn && tone == toneOK {
			tone = t
		}
	}
	worse(pendingTone(s))
	worse(inReviewTone(s))
	if s.DeadLetters > 0 || len(s.Health) > 0 {
		worse(toneBad)
	}
	for _, g := range s.Groups {
		worse(lagTone(g.Lag))
		worse(deliveryTone(g.MostIdle))
	}
	switch tone {
	case toneBad:
		return tone, "Needs attention"
	case toneWarn:
		return tone, "Behind"
	default:
		return tone, "Healthy"
	}
}

func pendingTone(s *inspect.Snapshot) string {
	switch age := s.TakenAt.Sub(s.Backlog.OldestPendingAt); {
	case s.Backlog.Pending == 0:
		return toneIdle
	case age > pendingAgeBad:
		return toneBad
	case age > pendingAgeWarn:
		return toneWarn
	default:
		return toneOK
	}
}

func inReviewTone(s *inspect.Snapshot) string {
	switch {
	case s.Backlog.InReview == 0:
		return toneIdle
	case s.TakenAt.Sub(s.Backlog.OldestInReviewAt) > inReviewAgeBad:
		return toneBad
	default:
		return toneOK
	}
}

// deliveryTone colours the pending entry delivered longest ago: past
// deliveryIdleBad, it looks stuck (retries wait 30 minutes at most).
func deliveryTone(e *inspect.PendingEntry) string {
	if e != nil && e.IdleSecs > deliveryIdleBad.Seconds() {
		return toneBad
	}
	return toneOK
}

func lagTone(lag int64) string {
	switch {
	case lag > lagBad:
		return toneBad
	case lag > lagWarn:
		return toneWarn
	default:
		return toneOK
	}
}

// overviewView is the pipeline at a glance. Its tables are lists of rows,
// so that rows per partition, priority or tenant slot in as those exist.
type overviewView struct {
	Tiles     []tile
	Breakdown []breakdown
	Streams   []streamRow
	// Partitions are the rows of the partitions table, when the pipeline
	// has more than one; PartitionGroups names its groups' columns.
	Partitions      []partitionRow
	PartitionGroups []string
	Groups          []groupRow
	Problems        []string
	Chart           chart
	// Failed counts the failed jobs, for the "retry all" button.
	Failed int64
}

// tile is a big number. Metric names it as `jobrelay status --json` does
// (dots between keys), and Raw is its value unformatted.
type tile struct {
	Label, Value, Raw, Metric string
	Note, Tone, Href          string
}

// breakdown is a table of counts with bars: jobs by status now; by priority
// or tenant later.
type breakdown struct {
	Title string
	Rows  []breakdownRow
}

type breakdownRow struct {
	Label, Value, Raw, Metric, Note, Tone string
	Bar                                   float64 // width of the bar, 0 to 100
	// Oldest is the time the Note's age counts from (RFC 3339), and
	// OldestMetric its name in `jobrelay status --json`; empty if none.
	Oldest, OldestMetric string
}

// partitionRow is a partition of the stream: its length, each group's lag
// and pending entries in it, and its dead letters.
type partitionRow struct {
	Name, Metric                 string
	Exists                       bool
	Length, LengthRaw            string
	DeadLetters, DeadRaw, DeadOf string
	Groups                       []partitionGroup // one per PartitionGroups
}

// partitionGroup is a group's lag and pending entries in one partition;
// Metric is empty when the group has not read that partition yet.
type partitionGroup struct {
	Metric               string
	Lag, LagRaw, LagTone string
	Pending, PendingRaw  string
}

type streamRow struct {
	Name, Metric                       string
	Exists                             bool
	Length, LengthRaw                  string
	Added, AddedRaw                    string
	First, Last                        string
	DeadLetters, DeadRaw, DeadLetterOf string
}

type groupRow struct {
	Name, Metric         string
	Consumers            int
	Lag, LagRaw, LagTone string
	Pending, PendingRaw  string
	OldestPending        string
	// MostIdle is the pending delivery that has waited longest for a
	// result.
	MostIdle, MostIdleNote, MostIdleTone string
	Members                              []consumerRow
}

type consumerRow struct {
	Name, Pending, Idle string
	IdleTone            string
}

// statusTones colour the statuses.
var statusTones = map[string]string{
	db.StatusPendingReview: "pending",
	db.StatusInReview:      "inreview",
	db.StatusReviewed:      "reviewed",
	db.StatusFailed:        "failed",
	db.StatusArchived:      "archived",
}

func (d *Dashboard) newOverview(s *inspect.Snapshot, now time.Time) overviewView {
	v := overviewView{Failed: s.Jobs[db.StatusFailed], Chart: newChart(d.history.snapshot(), d.cfg.Window, now)}
	age := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return "oldest " + human(now.Sub(t))
	}
	pendingNote := cmp.Or(age(s.Backlog.OldestPendingAt), "nothing waits")
	inReviewNote := cmp.Or(age(s.Backlog.OldestInReviewAt), "nothing in flight")
	deadTone := toneOK
	if s.DeadLetters > 0 {
		deadTone = toneBad
	}
	failedTone := toneOK
	if s.Jobs[db.StatusFailed] > 0 {
		failedTone = toneBad
	}
	p := d.cfg.Prefix
	v.Tiles = []tile{
		numTile("Pending review", "backlog.pending", s.Backlog.Pending, pendingNote, pendingTone(s), ""),
		numTile("In review", "backlog.in_review", s.Backlog.InReview, inReviewNote, inReviewTone(s), ""),
		numTile("Reviewed", "jobs.reviewed", s.Jobs[db.StatusReviewed], "all time", toneOK, ""),
		numTile("Failed", "jobs.failed", s.Jobs[db.StatusFailed], "dead-lettered jobs", failedTone, p+"/dead-letters"),
		numTile("Dead letters", "dead_letters", s.DeadLetters, "in "+d.deadLetterKeys(), deadTone, p+"/dead-letters"),
		numTile("Stream length", "stream.length", s.Stream.Length, "entries in "+d.streams(), toneOK, ""),
	}

	total := int64(0)
	for _, n := range s.Jobs {
		total += n
	}
	statuses := breakdown{Title: "Jobs by status"}
	for _, st := range db.AllStatuses() {
		n := s.Jobs[st]
		row := breakdownRow{Label: st, Value: formatInt(n), Raw: strconv.FormatInt(n, 10), Metric: "jobs." + st, Tone: statusTones[st]}
		if total > 0 {
			row.Bar = float64(n) / float64(total) * 100
		}
		switch st {
		case db.StatusPendingReview:
			row.Note = age(s.Backlog.OldestPendingAt)
		case db.StatusInReview:
			row.Note = age(s.Backlog.OldestInReviewAt)
			if s.Backlog.InReviewUntracked > 0 {
				row.Note = strings.TrimPrefix(row.Note+"; ", "; ") + formatInt(s.Backlog.InReviewUntracked) + " without a stream entry"
			}
		}
		statuses.Rows = append(statuses.Rows, row)
	}
	v.Breakdown = append(v.Breakdown, statuses)
	if len(s.Backlog.ByPriority) > 1 {
		v.Breakdown = append(v.Breakdown, levelBreakdown("Pending by priority", "backlog.by_priority.", s.Backlog.ByPriority,
			func(l inspect.Level) string { return l.Priority }, s.Backlog.Pending, now))
	}
	if len(s.Backlog.ByTenant) > 1 {
		v.Breakdown = append(v.Breakdown, levelBreakdown("Pending by tenant", "backlog.by_tenant.", s.Backlog.ByTenant,
			func(l inspect.Level) string { return l.Tenant }, s.Backlog.Pending, now))
	}

	st := s.Stream
	v.Streams = []streamRow{{
		Name: st.Name, Metric: "stream", Exists: st.Exists,
		Length: formatInt(st.Length), LengthRaw: strconv.FormatInt(st.Length, 10),
		Added: formatInt(st.EntriesAdded), AddedRaw: strconv.FormatInt(st.EntriesAdded, 10),
		First: entryAge(now, st.FirstID), Last: entryAge(now, st.LastID),
		DeadLetters: formatInt(s.DeadLetters), DeadRaw: strconv.FormatInt(s.DeadLetters, 10), DeadLetterOf: stream.DeadLetterKey(st.Name),
	}}
	if len(s.Partitions) > 0 {
		// The sums of the partitions have no oldest or newest entry.
		v.Streams[0].Name += " (" + strconv.Itoa(len(s.Partitions)) + " partitions)"
		v.Streams[0].First, v.Streams[0].Last = "per partition", "per partition"
	}
	v.Partitions, v.PartitionGroups = newPartitionRows(s)
	for _, g := range s.Groups {
		row := groupRow{
			Name: g.Name, Metric: "groups." + g.Name, Consumers: len(g.Consumers),
			Lag: formatInt(g.Lag), LagRaw: strconv.FormatInt(g.Lag, 10), LagTone: lagTone(g.Lag),
			Pending: formatInt(g.Pending), PendingRaw: strconv.FormatInt(g.Pending, 10),
			OldestPending: entryAge(now, g.OldestPendingID),
		}
		if g.Lag < 0 {
			row.Lag, row.LagTone = "unknown", toneWarn
		}
		row.MostIdle, row.MostIdleTone = "–", toneOK
		if e := g.MostIdle; e != nil {
			row.MostIdle = human(time.Duration(e.IdleSecs * float64(time.Second)))
			row.MostIdleNote = e.ID + " at " + e.Consumer + ", " + plural(e.Deliveries, "delivery", "deliveries")
			row.MostIdleTone = deliveryTone(e)
		}
		for _, c := range g.Consumers {
			idle := time.Duration(c.Idle * float64(time.Second))
			tone := toneOK
			if idle > 10*time.Minute {
				tone = toneIdle
			}
			row.Members = append(row.Members, consumerRow{Name: c.Name, Pending: formatInt(c.Pending), Idle: human(idle), IdleTone: tone})
		}
		v.Groups = append(v.Groups, row)
	}
	for _, h := range s.Health {
		line := h.Component + ": " + h.Problem
		if !h.Since.IsZero() {
			line += " (since " + ago(now, h.Since) + ")"
		}
		v.Problems = append(v.Problems, line)
	}
	return v
}

// levelBreakdown is the pending jobs by priority or tenant, as `jobrelay
// status` shows them when there is more than one level. Metrics name a
// level by its label: backlog.by_priority.<priority>.pending.
func levelBreakdown(title, metric string, levels []inspect.Level, label func(inspect.Level) string, pending int64, now time.Time) breakdown {
	b := breakdown{Title: title}
	for _, l := range levels {
		name := label(l)
		row := breakdownRow{Label: name, Value: formatInt(l.Pending), Raw: strconv.FormatInt(l.Pending, 10),
			Metric: metric + name + ".pending", Tone: statusTones[db.StatusPendingReview]}
		if pending > 0 {
			row.Bar = float64(l.Pending) / float64(pending) * 100
		}
		if !l.OldestPendingAt.IsZero() {
			row.Note = "oldest " + human(now.Sub(l.OldestPendingAt))
			row.Oldest, row.OldestMetric = l.OldestPendingAt.UTC().Format(time.RFC3339Nano), metric+name+".oldest_pending_at"
		}
		b.Rows = append(b.Rows, row)
	}
	return b
}

// newPartitionRows is the partitions table: a row per partition, and a
// lag and pending column per group (the groups of the sums, in their
// order). Metrics name a partition by its index in status --json's
// partitions: partitions.<i>.groups.<group>.lag.
func newPartitionRows(s *inspect.Snapshot) ([]partitionRow, []string) {
	if len(s.Partitions) < 2 {
		return nil, nil
	}
	names := make([]string, 0, len(s.Groups))
	for _, g := range s.Groups {
		names = append(names, g.Name)
	}
	rows := make([]partitionRow, 0, len(s.Partitions))
	for i, p := range s.Partitions {
		metric := "partitions." + strconv.Itoa(i)
		row := partitionRow{Name: p.Stream.Name, Metric: metric, Exists: p.Stream.Exists,
			Length: formatInt(p.Stream.Length), LengthRaw: strconv.FormatInt(p.Stream.Length, 10),
			DeadLetters: formatInt(p.DeadLetters), DeadRaw: strconv.FormatInt(p.DeadLetters, 10), DeadOf: stream.DeadLetterKey(p.Stream.Name)}
		for _, name := range names {
			j := slices.IndexFunc(p.Groups, func(g inspect.Group) bool { return g.Name == name })
			if j < 0 {
				row.Groups = append(row.Groups, partitionGroup{Lag: "–", Pending: "–", LagTone: toneOK})
				continue
			}
			g := p.Groups[j]
			pg := partitionGroup{Metric: metric + ".groups." + name,
				Lag: formatInt(g.Lag), LagRaw: strconv.FormatInt(g.Lag, 10), LagTone: lagTone(g.Lag),
				Pending: formatInt(g.Pending), PendingRaw: strconv.FormatInt(g.Pending, 10)}
			if g.Lag < 0 {
				pg.Lag, pg.LagTone = "unknown", toneWarn
			}
			row.Groups = append(row.Groups, pg)
		}
		rows = append(rows, row)
	}
	return rows, names
}

// streams names the pipeline's streams, for a note.
func (d *Dashboard) streams() string {
	if d.cfg.Partitions > 1 {
		return d.cfg.Stream + ":0 … " + d.cfg.Stream + ":" + strconv.Itoa(d.cfg.Partitions-1)
	}
	return d.cfg.Stream
}

// deadLetterKeys names the pipeline's dead-letter streams, for a note.
func (d *Dashboard) deadLetterKeys() string {
	if d.cfg.Partitions > 1 {
		return stream.DeadLetterKey(d.cfg.Stream+":0") + " … " + stream.DeadLetterKey(d.cfg.Stream+":"+strconv.Itoa(d.cfg.Partitions-1))
	}
	return stream.DeadLetterKey(d.cfg.Stream)
}

func numTile(label, metric string, n int64, note, tone, href string) tile {
	return tile{Label: label, Metric: metric, Value: formatInt(n), Raw: strconv.FormatInt(n, 10), Note: note, Tone: tone, Href: href}
}

// deadView is the dead letters page.
type deadView struct {
	Total string
	// TotalRaw is Total unformatted.
	TotalRaw string
	Shown    int
	// Keys names the dead-letter streams read.
	Keys   string
	Rows   []deadRow
	Failed int64 // failed jobs, for "retry all"; -1 when unknown
}

type deadRow struct {
	ID, JobID, Title, Error string
	Deliveries, Attempt     string
	When, WhenISO, Consumer string
	TaskID                  string
	Linked                  bool // JobID is a job ID to link to
}

func (d *Dashboard) newDeadView(snap *inspect.Snapshot, list []inspect.DeadLetter, now time.Time) deadView {
	v := deadView{Shown: len(list), Failed: -1, Total: "?", Keys: d.deadLetterKeys()}
	if snap != nil {
		v.Failed = snap.Jobs[db.StatusFailed]
		n := max(snap.DeadLetters, int64(len(list)))
		v.Total = formatInt(n)
		if n == snap.DeadLetters {
			// The count status shows (the list may also have grown since
			// the snapshot).
			v.TotalRaw = strconv.FormatInt(n, 10)
		}
	}
	for _, l := range list {
		v.Rows = append(v.Rows, newDeadRow(l, now))
	}
	return v
}

func newDeadRow(l inspect.DeadLetter, now time.Time) deadRow {
	row := deadRow{ID: l.ID, JobID: cmp.Or(l.JobID, "(no job_id: malformed entry)"), Title: l.Title, Error: l.Error,
		Deliveries: strconv.FormatInt(l.Deliveries, 10), Attempt: l.Attempt, Consumer: l.Consumer, TaskID: l.TaskID,
		Linked: db.CheckJobID(l.JobID) == nil}
	if !l.DeadAt.IsZero() {
		row.When, row.WhenISO = ago(now, l.DeadAt), l.DeadAt.UTC().Format(time.RFC3339)
	}
	return row
}

// jobView is a job's life.
type jobView struct {
	ID, Status, Tone, Title string
	Facts                   []fact
	Events                  []event
	LastError               string
	Stream                  string
	Entry                   *inspect.Entry
	EntryNote               string
	Deliveries              []deliveryRow
	DeadLetters             []deadRow
	Failed                  bool
}

type fact struct {
	Label, Value string
	Mono, Null   bool
}

type event struct {
	When, WhenISO, Label, Detail, Tone string
	at                                 time.Time
}

type deliveryRow struct {
	Group, Consumer, Idle, Count string
}

func newJobView(l *inspect.JobLife) jobView {
	r, now := l.Row, l.TakenAt
	v := jobView{ID: r.ID, Status: r.Status, Tone: statusTones[r.Status], Title: cmp.Or(r.Title.String, "(untitled)"),
		LastError: r.LastError.String, Stream: l.Stream, Entry: l.Entry, Failed: r.Status == db.StatusFailed}
	text := func(label string, t pgtype.Text, mono bool) fact {
		if !t.Valid {
			return fact{Label: label, Value: "NULL", Mono: true, Null: true}
		}
		return fact{Label: label, Value: t.String, Mono: mono}
	}
	v.Facts = []fact{
		{Label: "Status", Value: r.Status, Mono: true},
		text("Company", r.Company, false),
		text("Site", r.Site, false),
		text("Location", r.Location, false),
		text("URL", r.JobURL, true),
		{Label: "Publish attempts", Value: strconv.Itoa(int(r.Attempts)), Mono: true},
		text("Stream", r.Stream, true),
		text("Entry ID", r.StreamID, true),
		{Label: "Created", Value: stamp(now, r.CreatedAt)},
		{Label: "Updated", Value: stamp(now, r.UpdatedAt)},
	}
	if r.EnqueuedAt.Valid {
		v.Facts = append(v.Facts, fact{Label: "Published", Value: stamp(now, r.EnqueuedAt.Time)})
	}
	add := func(at time.Time, label, detail, tone string) {
		v.Events = append(v.Events, event{When: ago(now, at), WhenISO: at.UTC().Format(time.RFC3339), Label: label, Detail: detail, Tone: tone, at: at})
	}
	add(r.CreatedAt, "Created", "inserted as pending_review", "pending")
	if r.EnqueuedAt.Valid {
		add(r.EnqueuedAt.Time, "Published, attempt "+strconv.Itoa(int(r.Attempts)), "entry "+r.StreamID.String+" in "+l.Stream, "inreview")
	}
	for _, dl := range l.DeadLetters {
		add(dl.DeadAt, "Dead-lettered", "attempt "+cmp.Or(dl.Attempt, "?")+" after "+plural(dl.Deliveries, "delivery", "deliveries")+": "+
			truncate(dl.Error, 160), "failed")
		v.DeadLetters = append(v.DeadLetters, newDeadRow(dl, now))
	}
	add(r.UpdatedAt, "Now "+r.Status, "last change of the row", statusTones[r.Status])
	slices.SortStableFunc(v.Events, func(a, b event) int { return a.at.Compare(b.at) })
	for _, dv := range l.Deliveries {
		v.Deliveries = append(v.Deliveries, deliveryRow{Group: dv.Group, Consumer: dv.Consumer, Idle: human(dv.Idle), Count: strconv.FormatInt(dv.Count, 10)})
	}
	switch {
	case !r.StreamID.Valid:
		v.EntryNote = "Not published yet: no stream entry recorded."
	case l.Entry == nil:
		v.EntryNote = "Entry " + r.StreamID.String + " is no longer in " + l.Stream + ": acknowledged and trimmed, or lost (the reaper re-enqueues lost in_review jobs)."
	}
	return v
}

// errorView is an error page.
type errorView struct {
	Status        int
	Text, Message string
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"overview", "dead", "job", "error"} {
		t, err := template.New(name).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// formatInt writes 1234567 as "1,234,567".
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// human writes a duration the way people say it: "45s", "3m 12s",
// "2h 5m", "3d 4h".
func human(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return two(int(d.Minutes()), "m", int(d.Seconds())%60, "s")
	case d < 48*time.Hour:
		return two(int(d.Hours()), "h", int(d.Minutes())%60, "m")
	default:
		return two(int(d.Hours())/24, "d", int(d.Hours())%24, "h")
	}
}

func two(a int, au string, b int, bu string) string {
	if b == 0 {
		return strconv.Itoa(a) + au
	}
	return strconv.Itoa(a) + au + " " + strconv.Itoa(b) + bu
}

// ago says how long before now t was.
func ago(now, t time.Time) string { return human(now.Sub(t)) + " ago" }

// stamp is a time with how long ago it was.
func stamp(now, t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC · " + ago(now, t)
}

// entryAge is an entry ID with the age its ID says.
func entryAge(now time.Time, id string) string {
	if id == "" {
		return "–"
	}
	parsed, ok := stream.ParseID(id)
	if !ok {
		return id
	}
	return human(now.Sub(time.UnixMilli(int64(parsed.MS)))) + " old"
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return formatInt(n) + " " + many
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
