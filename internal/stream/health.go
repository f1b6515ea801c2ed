package stream

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Health reports let a component of a pipeline (a consumer, a relay) tell
// the other processes, `jobrelay status --check` first, about a problem
// that keeps it from making progress, such as a consumer that cannot
// record its results. They live in a hash, "<stream>:health": the field is
// the component (for example "consumer host-12-a1b2c3"), the value a
// HealthReport in JSON. A component refreshes its report every
// HealthRefresh while the problem lasts and removes it when the problem
// clears; readers ignore reports older than HealthStaleAfter, so that the
// report of a process that died does not fail the pipeline's health
// forever. The hash expires when no component has reported for a while.
const (
	HealthRefresh    = 5 * time.Second
	HealthStaleAfter = 30 * time.Second
	healthKeyTTL     = 10 * HealthStaleAfter
)

// HealthKey is the name of a stream's hash of health reports.
func HealthKey(stream string) string { return helperKey(stream, "health") }

// HealthReport is a component's problem.
type HealthReport struct {
	Component  string    `json:"component,omitempty"` // the hash field
	Problem    string    `json:"problem"`
	Since      time.Time `json:"since"`       // when the problem began
	ReportedAt time.Time `json:"reported_at"` // when the report was last refreshed
}

// ReportProblem sets (or refreshes) a component's report, now.
func ReportProblem(ctx context.Context, rdb redis.Cmdable, stream, component, problem string, since time.Time) error {
	v, err := json.Marshal(HealthReport{Problem: problem, Since: since.UTC(), ReportedAt: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode health report: %w", err)
	}
	key := HealthKey(stream)
	_, err = rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, key, component, v)
		pipe.PExpire(ctx, key, healthKeyTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("report the health of %s: %w", component, err)
	}
	return nil
}

// ClearProblem removes a component's report.
func ClearProblem(ctx context.Context, rdb redis.Cmdable, stream, component string) error {
	if err := rdb.HDel(ctx, HealthKey(stream), component).Err(); err != nil {
		return fmt.Errorf("clear the health report of %s: %w", component, err)
	}
	return nil
}

// Problems returns the reports refreshed within staleAfter of now, by
// component. A value that does not parse is reported as it is: a problem
// nobody can read is still one.
func Problems(ctx context.Context, rdb redis.Cmdable, stream string, now time.Time, staleAfter time.Duration) ([]HealthReport, error) {
	all, err := rdb.HGetAll(ctx, HealthKey(stream)).Result()
	if err != nil {
		return nil, fmt.Errorf("read health reports of %s: %w", stream, err)
	}
	out := []HealthReport{}
	for component, v := range all {
		var r HealthReport
		if json.Unmarshal([]byte(v), &r) != nil {
			out = append(out, HealthReport{Component: component, Problem: "unreadable health report: " + v})
			continue
		}
		if now.Sub(r.ReportedAt) > staleAfter {
			continue
		}
		r.Component = component
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b HealthReport) int { return cmp.Compare(a.Component, b.Component) })
	return out, nil
}

// HealthReporter keeps one component's report up to date: call Update with
// the current problem ("" for none) at least every HealthRefresh. It
// writes to Redis only when there is a problem to refresh, or one to clear.
// It is not safe for concurrent use.
type HealthReporter struct {
	Client    redis.Cmdable
	Stream    string
	Component string

	reported   bool
	reportedAt time.Time
}

// Update reports problem, which began at since, or clears the report.
// Unchanged problems are refreshed no more often than every
// HealthRefresh/2.
func (h *HealthReporter) Update(ctx context.Context, problem string, since time.Time) error {
	switch {
	case problem == "" && !h.reported:
		return nil
	case problem == "":
		if err := ClearProblem(ctx, h.Client, h.Stream, h.Component); err != nil {
			return err
		}
		h.reported = false
		return nil
	case h.reported && time.Since(h.reportedAt) < HealthRefresh/2:
		return nil
	}
	if err := ReportProblem(ctx, h.Client, h.Stream, h.Component, problem, since); err != nil {
		return err
	}
	h.reported, h.reportedAt = true, time.Now()
	return nil
}

// Close clears the component's report as it stops, under a deadline of
// its own (ctx may be done already: the component is stopping).
func (h *HealthReporter) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	return h.Update(ctx, "", time.Time{})
}
