package testenv

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logs is a slog.Handler that keeps every record for assertions and, when
// verbose, echoes it to the test log.
type Logs struct {
	mu      *sync.Mutex
	records *[]Record
	attrs   []slog.Attr
	t       testing.TB
}

// Record is a kept log record with its attributes flattened to strings.
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

// NewLogs returns a logger that records into the returned Logs.
func NewLogs(t testing.TB) (*slog.Logger, *Logs) {
	t.Helper()
	l := &Logs{mu: &sync.Mutex{}, records: &[]Record{}, t: t}
	return slog.New(l), l
}

// Enabled implements slog.Handler: everything is kept, Debug included.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	*l.records = append(*l.records, rec)
	l.mu.Unlock()
	if testing.Verbose() {
		l.t.Logf("%s %s %v", r.Level, r.Message, rec.Attrs)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (l *Logs) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(append([]slog.Attr{}, l.attrs...), attrs...)
	return &c
}

// WithGroup implements slog.Handler; groups are not kept.
func (l *Logs) WithGroup(string) slog.Handler { return l }

// Records returns a copy of the records so far.
func (l *Logs) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), *l.records...)
}

// Matching returns the records whose message contains substr.
func (l *Logs) Matching(substr string) []Record {
	var out []Record
	for _, r := range l.Records() {
		if strings.Contains(r.Message, substr) {
			out = append(out, r)
		}
	}
	return out
}
