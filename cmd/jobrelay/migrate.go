package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/jobrelay/jobrelay/db"
)

const migrateHelp = `Applies or rolls back jobrelay's migrations (embedded in the binary; the
same files run with "goose -dir goose postgres "$DATABASE_URL" up"):

  up           apply every pending migration
  down         roll back the latest one
  down-to N    roll back to version N (0: all; the jobs table itself is kept)
  status       list the migrations and when each was applied

Migrations of one schema take turns under an advisory lock, so several
replicas may run "migrate up" at once.

Rolling back migration 3 (the relay's bookkeeping) or 4 (the stream of
each job) while jobs are in_review is refused (exit 2): it would forget
their stream entries, or which deployment's they are, and they would be
published again. Stop the relays, let the consumers finish, or pass
--force.`

type migrateCommand struct {
	dc     dbConfig
	force  bool
	sub    string // up, down, down-to or status
	target int64  // of down-to
}

func (c *migrateCommand) parseFlags(a *app, args []string) error {
	s := newSettings("migrate", a.env)
	s.bind(c.dc.bindings()...)
	s.bind(&binding{flag: "force", ptr: &c.force, def: false, help: "roll back the bookkeeping migration even while jobs are in_review"})
	// Flags may come before or after the subcommand: "migrate down --force".
	rest, err := a.parseOrHelp(s, args, "jobrelay migrate up|down|down-to N|status [flags]", migrateHelp)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usagef("migrate: say up, down, down-to N or status (see --help)")
	}
	c.sub = rest[0]
	switch rest[0] {
	case "up", "down", "status":
		if len(rest) != 1 {
			return usagef("migrate %s takes no argument", rest[0])
		}
	case "down-to":
		if len(rest) != 2 {
			return usagef("migrate down-to needs a version, as in \"migrate down-to 0\"")
		}
		if c.target, err = strconv.ParseInt(rest[1], 10, 64); err != nil || c.target < 0 {
			return usagef("migrate down-to: version must be a whole number from 0, got %q", rest[1])
		}
	default:
		return usagef("migrate: unknown subcommand %q: want up, down, down-to N or status", rest[0])
	}
	return nil
}

func (c *migrateCommand) run(ctx context.Context, a *app) error {
	dc, force, target := c.dc, c.force, c.target
	rest := []string{c.sub}
	logger := a.logger(dc.LogFormat, dc.LogLevel)
	pool, err := db.Open(ctx, dc.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if !waitForPostgres(ctx, logger, pool) {
		return nil
	}
	m, err := db.NewMigrator(ctx, pool, logger)
	if err != nil {
		return err
	}
	defer m.Close()

	if rest[0] == "down-to" {
		if err := checkVersion(m, target); err != nil {
			return err
		}
	}
	if rest[0] == "down" || rest[0] == "down-to" {
		if err := checkRollback(ctx, pool, m, rest[0], target, force); err != nil {
			return err
		}
	}

	var results []*goose.MigrationResult
	switch rest[0] {
	case "up":
		results, err = m.Up(ctx)
	case "down":
		var r *goose.MigrationResult
		if r, err = m.Down(ctx); r != nil {
			results = append(results, r)
		}
	case "down-to":
		results, err = m.DownTo(ctx, target)
	case "status":
		return printMigrations(ctx, a, m)
	}
	for _, r := range results {
		fmt.Fprintf(a.stdout, "%-4s %s (%s)\n", r.Direction, r.Source.Path, r.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", rest[0], err)
	}
	v, err := m.GetDBVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "database version: %d\n", v)
	return nil
}

// checkVersion refuses, as a usage error (exit 2), a target that is neither
// 0 nor the version of a migration: goose would roll back to the version
// below it without a word.
func checkVersion(m *goose.Provider, target int64) error {
	if target == 0 {
		return nil
	}
	var versions []string
	for _, src := range m.ListSources() {
		if src.Version == target {
			return nil
		}
		versions = append(versions, strconv.FormatInt(src.Version, 10))
	}
	return usagef("migrate down-to %d: no migration has version %d (the versions are 0 for none, %s)", target, target, strings.Join(versions, ", "))
}

// checkRollback refuses, as a usage error (exit 2), to roll back the
// bookkeeping migration while jobs are in_review, unless forced.
func checkRollback(ctx context.Context, pool db.DBTX, m *goose.Provider, sub string, target int64, force bool) error {
	if force {
		return nil
	}
	from, err := m.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", sub, err)
	}
	to := target
	if sub == "down" {
		to = from - 1
	}
	err = db.CheckRollback(ctx, pool, from, to)
	if _, ok := errors.AsType[*db.InReviewError](err); ok {
		return usagef("migrate %s: %v", sub, err)
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", sub, err)
	}
	return nil
}

func printMigrations(ctx context.Context, a *app, m *goose.Provider) error {
	statuses, err := m.Status(ctx)
	if err != nil {
		return fmt.Errorf("migrate status: %w", err)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tMIGRATION\tAPPLIED")
	for _, st := range statuses {
		applied := "pending"
		if st.State == goose.StateApplied {
			applied = st.AppliedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\n", st.Source.Version, st.Source.Path, applied)
	}
	return w.Flush()
}
