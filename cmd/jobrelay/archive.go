package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/relay"
)

const archiveHelp = `Moves the jobs reviewed more than --older-than ago (by updated_at, when
they became reviewed) to archived, 1000 per statement, each statement a
short transaction of its own, oldest first, until none is left. Rows other
transactions hold are skipped, not waited for: the relays and consumers go
on meanwhile, and a later run archives what was skipped. What was archived
before an error or a signal stays archived.

Relays with ARCHIVE_AFTER set do the same every minute; this is the same
work, by hand or from cron. --older-than counts days too: 30d, 1d12h.`

type archiveCommand struct {
	db        dbConfig
	olderThan time.Duration
}

func (c *archiveCommand) parseFlags(a *app, args []string) error {
	s := newSettings("archive", a.env)
	s.bind(c.db.bindings()...)
	s.bind(&binding{flag: "older-than", ptr: &c.olderThan, meta: "DURATION", days: true,
		help: "archive jobs reviewed longer ago than this: 30d, 1d12h, 36h (required; at least 1m)"})
	if err := a.parseNoArgs(s, args, "jobrelay archive --older-than DURATION [flags]", archiveHelp); err != nil {
		return err
	}
	if c.olderThan == 0 {
		return usagef("archive: say --older-than, e.g. --older-than 30d")
	}
	if c.olderThan < relay.ArchiveAfterMin {
		return usagef("--older-than: must be at least %s, got %s", relay.ArchiveAfterMin, c.olderThan)
	}
	return nil
}

func (c *archiveCommand) run(ctx context.Context, a *app) error {
	pool, err := db.Open(ctx, c.db.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	n, err := relay.Archive(ctx, pool, &relay.ArchiveParams{OlderThan: c.olderThan})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("archive: %d job(s) archived before: %w", n, err)
	}
	fmt.Fprintf(a.stdout, "%d reviewed job(s) archived (reviewed before %s) in %s\n",
		n, start.Add(-c.olderThan).UTC().Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
	return nil
}
