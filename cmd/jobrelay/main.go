// Command jobrelay moves job postings that wait for review from PostgreSQL
// to a Redis stream, and runs the workers that review them.
//
//	jobrelay run                 migrate, relay and consume in one process
//	jobrelay relay [--once]      the relay daemon
//	jobrelay consume             a consumer of the review group
//	jobrelay migrate up|down|down-to N|status
//	jobrelay status [--json] [--check]
//	jobrelay seed -n N
//	jobrelay retry --failed [--job ID]
//	jobrelay version
//
// Run `jobrelay <command> --help` for a command's flags and variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
)

// main wires what belongs to the process, not to one run of a command:
// the signals, and go-redis's logger, which is package-global
// (redis.SetLogger), so it is set here, to the command's logger, and not
// in run, which tests call side by side, nor in library packages.
func main() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gcPercentDefault)
	}
	m := NewMain()
	m.OnLogger = setRedisLogger
	os.Exit(m.Main(os.Args[1:]))
}

// gcPercentDefault is the collector's pace (GOGC) unless the environment
// sets GOGC. jobrelay's live heap is small (a batch or two of jobs per
// relay worker or consumer, and the clients' buffers), so at Go's default
// of 100 the collector ran every few milliseconds while a backlog drained,
// and was about a fifth of the relay's CPU. At 400 the heap may grow to
// five times the live data: draining 200,000 jobs, the relay's CPU per job
// fell by 18% (8.5 to 7.0 µs, RELAY_WORKERS=2) for a peak RSS of 37 MB
// instead of 25. The go_gc_gogc_percent metric shows the pace in use.
const gcPercentDefault = 400

// secondSignalAfter is how long after the first signal a second one aborts.
// A repeat within it is the same request to stop: GNU timeout, a process
// group and a supervisor that signals twice each send SIGTERM again at
// once, and a graceful stop must stay graceful.
const secondSignalAfter = time.Second

// Main is the program, as in wtf and litestream: ParseFlags picks the
// command and reads its settings, Run runs it, Close releases what Main
// holds. It lets the tests share the program's setup (run).
type Main struct {
	Stdout io.Writer
	Stderr io.Writer
	// Getenv looks up an environment variable.
	Getenv func(string) (string, bool)
	// OnLogger, if not nil, is given the command's logger (main: go-redis's
	// logger).
	OnLogger func(*slog.Logger)
	// Abort is closed at a second signal: a command stops at once.
	Abort <-chan struct{}

	app *app
	cmd command
}

// NewMain returns a Main on the process's streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.LookupEnv}
}

// app is what a command runs with.
type app struct {
	abort  <-chan struct{} // closed at a second signal, secondSignalAfter or more after the first
	env    *env
	stdout io.Writer
	stderr io.Writer

	// logFormat is the command's LOG_FORMAT once its settings are read, so
	// that a failure is reported in the same format as the logs.
	logFormat string
	// log is the command's logger once built, for the signal handler.
	log atomic.Pointer[slog.Logger]
	// onLogger is given the command's logger (main: go-redis's logger).
	onLogger func(*slog.Logger)
}

// command is one of jobrelay's commands.
type command interface {
	// parseFlags reads the command's settings and arguments.
	parseFlags(a *app, args []string) error
	// run does the command's work until done or ctx is.
	run(ctx context.Context, a *app) error
}

type commandInfo struct {
	name    string
	summary string
	new     func() command
}

func commands() []commandInfo {
	return []commandInfo{
		{"run", "migrate, relay and consume in one process (one machine)", newRunCommand},
		{"relay", "publish pending jobs to the stream (daemon; --once to drain and exit)", newRelayCommand},
		{"consume", "review jobs from the stream as a member of the consumer group", newConsumeCommand},
		{"migrate", "apply or roll back the database migrations (up, down, down-to N, status)", func() command { return &migrateCommand{} }},
		{"status", "show jobs by status, the stream, its groups and dead letters", func() command { return &statusCommand{} }},
		{"seed", "insert sample job postings (demos, benchmarks)", func() command { return &seedCommand{} }},
		{"retry", "send failed jobs back to pending_review", func() command { return &retryCommand{} }},
		{"archive", "move jobs reviewed long ago to archived (--older-than 30d)", func() command { return &archiveCommand{} }},
		{"healthcheck", "exit 0 if this container's jobrelay is ready (for container health checks)", func() command { return &healthcheckCommand{} }},
		{"version", "print the version", func() command { return &versionCommand{} }},
	}
}

// ParseFlags picks the command that args name and reads its settings:
// flags, then the environment, then ./.env. It returns flag.ErrHelp when
// help was printed.
func (m *Main) ParseFlags(ctx context.Context, args []string) error { //nolint:unparam // wtf's and litestream's shape: parsing may need ctx (e.g. a config file from a remote store)
	m.app = &app{abort: m.Abort, stdout: m.Stdout, stderr: m.Stderr, onLogger: m.OnLogger}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(m.Stdout)
		return flag.ErrHelp
	}
	if v, ok := m.Getenv("LOG_FORMAT"); ok {
		m.app.logFormat = strings.TrimSpace(v)
	}
	e, err := loadEnv(m.Getenv, ".env")
	if err != nil {
		return err
	}
	m.app.env = e
	for _, c := range commands() {
		if c.name == args[0] {
			m.cmd = c.new()
			return m.cmd.parseFlags(m.app, args[1:])
		}
	}
	return usagef("unknown command %q (see jobrelay --help)", args[0])
}

// Run runs the command until it is done or ctx is.
func (m *Main) Run(ctx context.Context) error { return m.cmd.run(ctx, m.app) }

// Close releases what Main holds: each command closes its own clients, so
// nothing is left.
func (m *Main) Close() error { return nil }

// Main is the whole program on args: signals, ParseFlags, Run and Close.
// It reports a failure and returns the exit status: 0 done, 1 failed, 2 a
// bad command line or configuration.
func (m *Main) Main(args []string) int {
	ctx, abort, stop := m.notifySignals()
	defer stop()
	m.Abort = abort
	err := m.ParseFlags(ctx, args)
	if err == nil {
		err = m.Run(ctx)
	}
	_ = m.Close()
	return m.exitStatus(err)
}

// notifySignals returns a context done at the first SIGINT or SIGTERM and
// a channel closed at a second one, secondSignalAfter or more after it.
func (m *Main) notifySignals() (ctx context.Context, abort <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	aborted := make(chan struct{})
	returned := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-returned:
			return
		}
		first := time.Now()
		cancel() // first signal: stop gracefully
		for {
			select {
			case sig := <-sigs:
				if time.Since(first) < secondSignalAfter {
					if m.app != nil {
						if l := m.app.log.Load(); l != nil {
							l.Info("jobrelay: repeated signal within a second of the first; still stopping gracefully (signal again later to stop at once)",
								slog.String("signal", sig.String()))
						}
					}
					continue
				}
				close(aborted) // a second signal: stop now
				return
			case <-returned:
				return
			}
		}
	}()
	return ctx, aborted, func() {
		signal.Stop(sigs)
		close(returned)
		cancel()
	}
}

// exitStatus reports err, if any, and returns the exit status.
func (m *Main) exitStatus(err error) int {
	var uerr *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		return m.fail(err, 2)
	case errors.Is(err, errUnhealthy):
		return 1
	default:
		return m.fail(err, 1)
	}
}

// run is the program without the process, for tests: it returns the exit
// status.
func run(args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	return (&Main{Stdout: stdout, Stderr: stderr, Getenv: getenv}).Main(args)
}

// fail reports the error a command ends with, as one line on stderr: JSON
// when the command's logs are (LOG_FORMAT=json), so that every line is.
func (m *Main) fail(err error, code int) int {
	format := ""
	if m.app != nil {
		format = m.app.logFormat
	}
	if format == "json" {
		slog.New(slog.NewJSONHandler(m.Stderr, nil)).Error("jobrelay: "+err.Error(), slog.Int("exit_status", code))
		return code
	}
	fmt.Fprintln(m.Stderr, "jobrelay:", err)
	return code
}

func usage(w io.Writer) {
	fmt.Fprint(w, `jobrelay moves job postings that wait for review from PostgreSQL (status
pending_review) to the Redis stream job_review, and runs the consumers that
review them and record the outcome.

Usage: jobrelay <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Configuration comes from flags, the environment and ./.env, in that order.
Run "jobrelay <command> --help" for a command's flags and variables.

SIGINT or SIGTERM stops gracefully; a second signal, 1s or more after the
first, stops at once. A repeat within the second (GNU timeout, a process
group) is the same request and keeps the stop graceful.
`)
}

// parseOrHelp parses a command's flags and arguments; on --help it prints
// the command's help to stdout and returns flag.ErrHelp.
func (a *app) parseOrHelp(s *settings, args []string, synopsis, description string) ([]string, error) {
	rest, err := s.parse(args)
	var level slog.Level
	for _, b := range s.bindings {
		switch b.env {
		case "LOG_FORMAT":
			a.logFormat = strings.TrimSpace(b.value)
		case "LOG_LEVEL":
			_ = level.UnmarshalText([]byte(strings.TrimSpace(b.value)))
		}
	}
	if err == nil && a.onLogger != nil {
		// Commands that log nothing themselves (status, retry, seed) still
		// have go-redis's lines in their format; the others replace this
		// logger with their own.
		a.onLogger(a.newLogger(a.logFormat, level))
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(a.stdout, "Usage: %s\n\n%s\n\n", synopsis, strings.TrimSpace(description))
		s.help(a.stdout)
		fmt.Fprint(a.stdout, exitStatuses)
		return nil, err
	}
	return rest, err
}

// parseNoArgs is parseOrHelp for a command that takes no arguments: one is
// a usage error, not something to ignore ("relay once" is not --once).
func (a *app) parseNoArgs(s *settings, args []string, synopsis, description string) error {
	rest, err := a.parseOrHelp(s, args, synopsis, description)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("%s: unexpected argument %q; usage: %s", s.fs.Name(), rest[0], synopsis)
	}
	return nil
}

// exitStatuses ends every command's help, and the README says the same.
const exitStatuses = `
Exit status: 0 done (or stopped by a signal); 1 failed (a server
unreachable at the end, a migration that failed; status --check:
unhealthy); 2 bad usage or configuration: an unknown flag or argument, a
value out of range, or a METRICS_ADDR that cannot be listened on.
`

// logger builds the process's logger: tint for people (colored on a
// terminal), JSON for machines.
func (a *app) logger(format string, level slog.Level) *slog.Logger {
	l := a.newLogger(format, level)
	a.log.Store(l)
	if a.onLogger != nil {
		a.onLogger(l)
	}
	return l
}

func (a *app) newLogger(format string, level slog.Level) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}))
	}
	noColor := true
	if f, ok := a.stderr.(*os.File); ok {
		noColor = !isatty.IsTerminal(f.Fd())
	}
	return slog.New(tint.NewTextHandler(a.stderr, &tint.Options{
		Level:      level,
		TimeFormat: "15:04:05.000",
		NoColor:    noColor,
	}))
}

// durationsAsText writes durations as "5m0s" rather than nanoseconds, in
// JSON as in text.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// redisLogger sends go-redis's own log lines through slog, so that with
// LOG_FORMAT=json they are JSON like every other line. They are Warn, but
// for the repeats of a line within redisLogRepeat, failed dials (the
// component whose call failed says so) and calls our contexts ended, which
// are Debug, and the sentinels' choice of primary, which is Info: a Redis
// outage or failover shows as one line per component, not a storm.
type redisLogger struct {
	l *slog.Logger

	mu   sync.Mutex
	seen map[string]time.Time // message → when it was last logged at Warn
}

// redisLogRepeat is how long a go-redis message logged at Warn is logged at
// Debug when it comes again.
const redisLogRepeat = time.Minute

// Printf implements go-redis's internal.Logging.
func (r *redisLogger) Printf(ctx context.Context, format string, args ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	msg := "go-redis: " + strings.TrimPrefix(fmt.Sprintf(format, args...), "redis: ")
	level := slog.LevelWarn
	switch {
	case strings.HasPrefix(msg, "go-redis: sentinel: new master") || strings.HasPrefix(msg, "go-redis: sentinel: selected"):
		// Which primary the sentinels name: at start, and the one line
		// that shows a failover.
		level = slog.LevelInfo
	case strings.HasSuffix(msg, context.Canceled.Error()) || strings.HasSuffix(msg, context.DeadlineExceeded.Error()):
		// A call of ours that ended (a stop, a bounded wait), not a
		// server's trouble.
		level = slog.LevelDebug
	case strings.HasPrefix(msg, "go-redis: connection pool: failed to dial"):
		// The call that needed the connection fails with the same error,
		// and its component logs it (once per outage): a second line per
		// process would say nothing more.
		level = slog.LevelDebug
	}
	now := time.Now()
	r.mu.Lock()
	if last, ok := r.seen[msg]; ok && now.Sub(last) < redisLogRepeat {
		level = slog.LevelDebug
	} else {
		if len(r.seen) > 1000 { // addresses vary; keep the memory bounded
			clear(r.seen)
		}
		r.seen[msg] = now
	}
	r.mu.Unlock()
	r.l.LogAttrs(ctx, level, msg)
}

// setRedisLogger routes go-redis's package-global logger through l. Only
// main calls it (see main).
func setRedisLogger(l *slog.Logger) {
	redis.SetLogger(&redisLogger{l: l, seen: map[string]time.Time{}})
}
