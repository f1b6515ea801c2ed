package main

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobrelay/jobrelay/db"
)

const retryHelp = `Sends failed jobs (dead-lettered after MAX_DELIVERIES) back to
pending_review, so the relay publishes them again as a new attempt. Their
attempts count is kept and last_error cleared. With --job, only that job.`

func retryCmd(a *app, args []string) error {
	var (
		dc     dbConfig
		failed bool
		jobID  string
	)
	s := newSettings("retry", a.env)
	dc.register(s)
	s.add(boolSetting(&failed, "", "failed", false, "retry failed jobs (required)"))
	s.add(stringSetting(&jobID, "", "job", "", "ID", "only this job", func(v string) error {
		if v == "" {
			return nil
		}
		var id pgtype.UUID
		if err := id.Scan(v); err != nil {
			return fmt.Errorf("must be a job ID (a UUID)")
		}
		return nil
	}))
	if _, err := a.parseOrHelp(s, args, "jobrelay retry --failed [--job ID] [flags]", retryHelp); err != nil {
		return err
	}
	if !failed {
		return usagef("retry: say --failed (optionally with --job ID): only failed jobs can be retried")
	}
	pool, err := db.Open(a.ctx, dc.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := db.RetryFailed(a.ctx, pool, jobID)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d failed job(s) sent back to pending_review\n", n)
	return nil
}
