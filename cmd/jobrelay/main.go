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
	"strings"
	"syscall"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// app is what a command runs with.
type app struct {
	ctx    context.Context // done at the first SIGINT or SIGTERM
	abort  <-chan struct{} // closed at the second
	env    *env
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(a *app, args []string) error
}

func commands() []command {
	return []command{
		{"run", "migrate, relay and consume in one process (one machine)", runCmd},
		{"relay", "publish pending jobs to the stream (daemon; --once to drain and exit)", relayCmd},
		{"consume", "review jobs from the stream as a member of the consumer group", consumeCmd},
		{"migrate", "apply or roll back the database migrations (up, down, down-to N, status)", migrateCmd},
		{"status", "show jobs by status, the stream, its groups and dead letters", statusCmd},
		{"seed", "insert sample job postings (demos, benchmarks)", seedCmd},
		{"retry", "send failed jobs back to pending_review", retryCmd},
		{"healthcheck", "exit 0 if this container's jobrelay is ready (for container health checks)", healthcheckCmd},
		{"version", "print the version", versionCmd},
	}
}

// run is main without the process: it returns the exit status.
func run(args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abort := make(chan struct{})
	returned := make(chan struct{})
	defer close(returned)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
		case <-returned:
			return
		}
		cancel() // first signal: stop gracefully
		select {
		case <-sigs:
			close(abort) // second: stop now
		case <-returned:
		}
	}()

	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	e, err := loadEnv(getenv, ".env")
	if err != nil {
		fmt.Fprintln(stderr, "jobrelay:", err)
		return 2
	}
	a := &app{ctx: ctx, abort: abort, env: e, stdout: stdout, stderr: stderr}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(a, args[1:])
		var uerr *usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &uerr):
			fmt.Fprintln(stderr, "jobrelay:", err)
			return 2
		case errors.Is(err, errUnhealthy):
			return 1
		default:
			fmt.Fprintln(stderr, "jobrelay:", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "jobrelay: unknown command %q (see jobrelay --help)\n", args[0])
	return 2
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
`)
}

// parseOrHelp parses a command's flags; on --help it prints the command's
// help to stdout and returns flag.ErrHelp.
func (a *app) parseOrHelp(s *settings, args []string, synopsis, description string) ([]string, error) {
	rest, err := s.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(a.stdout, "Usage: %s\n\n%s\n\n", synopsis, strings.TrimSpace(description))
		s.help(a.stdout)
		return nil, err
	}
	return rest, err
}

// logger builds the process's logger: tint for people (colored on a
// terminal), JSON for machines.
func (a *app) logger(format string, level slog.Level) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level}))
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
