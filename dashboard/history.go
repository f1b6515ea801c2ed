package dashboard

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jobrelay/jobrelay/inspect"
)

// sample is what the throughput chart needs of a snapshot: counters whose
// rates are the throughput.
type sample struct {
	at    time.Time
	added int64            // entries ever added to the stream: published
	done  map[string]int64 // per group, entries read and acknowledged: finished
}

// history keeps the samples of the last window, oldest first.
type history struct {
	window time.Duration

	mu      sync.Mutex
	samples []sample
}

// minSampleGap is the least time between two samples kept: closer ones
// (the collector's and a viewer's read at once) give noisy rates.
const minSampleGap = 2 * time.Second

func newHistory(window time.Duration) *history { return &history{window: window} }

// add records a snapshot's counters. Snapshots older than the latest one
// kept, or too close to it, are dropped.
func (h *history) add(s *inspect.Snapshot) {
	if s == nil || !s.Stream.Exists {
		return
	}
	smp := sample{at: s.TakenAt, added: s.Stream.EntriesAdded, done: make(map[string]int64, len(s.Groups))}
	for _, g := range s.Groups {
		smp.done[g.Name] = g.EntriesRead - g.Pending
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.samples); n > 0 && s.TakenAt.Sub(h.samples[n-1].at) < minSampleGap {
		return
	}
	h.samples = append(h.samples, smp)
	// Keep one sample older than the window: the first rate starts there.
	cut := 0
	for cut+1 < len(h.samples) && s.TakenAt.Sub(h.samples[cut+1].at) > h.window {
		cut++
	}
	h.samples = slices.Delete(h.samples, 0, cut)
}

// snapshot copies the samples.
func (h *history) snapshot() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.samples)
}

// chart is the throughput chart, drawn as inline SVG.
type chart struct {
	Width, Height float64
	// Plot area.
	Left, Top, Right, Bottom float64
	Series                   []series
	Ticks                    []tick
	XLabels                  []tick
	// Empty says why there is nothing to draw yet.
	Empty string
}

// series is one line of the chart, in jobs per second.
type series struct {
	Name   string
	Class  string // the colour
	Points string // the polyline
	Area   string // the path of the area under it
	Last   string // the latest rate, formatted
	Peak   string
	// LastX and LastY place the dot on the latest rate.
	LastX, LastY float64
}

// tick is a label along an axis.
type tick struct {
	X, Y  float64
	Label string
}

// seriesClasses colour the lines: published, then one per group.
var seriesClasses = []string{"s-published", "s-done", "s-done2", "s-done3"}

// maxGroupsCharted bounds the lines of finished work.
const maxGroupsCharted = 3

// newChart draws the rates between samples over the window ending now.
func newChart(samples []sample, window time.Duration, now time.Time) chart {
	c := chart{Width: 720, Height: 200, Left: 48, Top: 12, Right: 708, Bottom: 172}
	start := now.Add(-window)
	for _, m := range []int{0, 5, 10, 15} {
		if d := time.Duration(m) * time.Minute; d <= window {
			label := strconv.Itoa(m) + " min ago"
			if m == 0 {
				label = "now"
			}
			c.XLabels = append(c.XLabels, tick{X: c.x(now.Add(-d), start, window), Y: c.Bottom + 18, Label: label})
		}
	}
	if len(samples) < 2 {
		c.Empty = "Collecting samples: the chart fills in as the pipeline's state is read."
		return c
	}
	groups := groupNames(samples)
	type point struct {
		at   time.Time
		rate float64
	}
	lines := make([][]point, 1+len(groups))
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 {
			continue
		}
		// A counter that went back (the stream was recreated) is no rate.
		lines[0] = append(lines[0], point{b.at, max(float64(b.added-a.added), 0) / dt})
		for g, name := range groups {
			av, aok := a.done[name]
			bv, bok := b.done[name]
			if aok && bok {
				lines[1+g] = append(lines[1+g], point{b.at, max(float64(bv-av), 0) / dt})
			}
		}
	}
	peak := 0.0
	for _, l := range lines {
		for _, p := range l {
			peak = max(peak, p.rate)
		}
	}
	top := niceCeil(peak)
	for _, f := range []float64{0, 0.5, 1} {
		c.Ticks = append(c.Ticks, tick{X: c.Left - 8, Y: c.y(f*top, top), Label: rate(f * top)})
	}
	for i, l := range lines {
		if len(l) == 0 {
			continue
		}
		name := "published"
		if i > 0 {
			name = "finished by " + groups[i-1]
		}
		s := series{Name: name, Class: seriesClasses[i%len(seriesClasses)], Last: rate(l[len(l)-1].rate) + "/s"}
		var pts []string
		peakRate := 0.0
		for _, p := range l {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.x(p.at, start, window), c.y(p.rate, top)))
			peakRate = max(peakRate, p.rate)
		}
		s.Peak = rate(peakRate) + "/s"
		s.Points = strings.Join(pts, " ")
		s.LastX, s.LastY = c.x(l[len(l)-1].at, start, window), c.y(l[len(l)-1].rate, top)
		first, last := c.x(l[0].at, start, window), c.x(l[len(l)-1].at, start, window)
		s.Area = fmt.Sprintf("M%.1f,%.1f L%s L%.1f,%.1f Z", first, c.Bottom, strings.Join(pts, " L"), last, c.Bottom)
		c.Series = append(c.Series, s)
	}
	return c
}

// x places a time on the plot.
func (c *chart) x(t, start time.Time, window time.Duration) float64 {
	f := t.Sub(start).Seconds() / window.Seconds()
	return c.Left + min(max(f, 0), 1)*(c.Right-c.Left)
}

// y places a rate on the plot.
func (c *chart) y(v, top float64) float64 {
	return c.Bottom - v/top*(c.Bottom-c.Top)
}

// groupNames lists the groups of the latest sample, at most
// maxGroupsCharted, sorted.
func groupNames(samples []sample) []string {
	var names []string
	for name := range samples[len(samples)-1].done {
		names = append(names, name)
	}
	slices.Sort(names)
	return names[:min(len(names), maxGroupsCharted)]
}

// niceCeil rounds a peak up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// rate formats jobs per second.
func rate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return formatInt(int64(math.Round(v)))
	}
}
