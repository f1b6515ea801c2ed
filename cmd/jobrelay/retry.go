package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobrelay/jobrelay/internal/retry"
)

const retryHelp = `Sends failed jobs (dead-lettered after MAX_DELIVERIES) back to
pending_review, so the relay publishes them again as a new attempt. Their
attempts count is kept and last_error cleared. With --job, only that job.

Their dead letters go with them: the entries of the retried jobs are
removed from the dead-letter stream "<stream>:dead", which so holds only
the jobs still failed (a job reviewed after all loses its dead letter
too). Malformed entries, which name no job, stay there until removed by
hand: redis-cli XRANGE job_review:dead - + shows them, and
redis-cli XDEL job_review:dead <ID> removes one.`

type retryCommand struct {
	common commonConfig
	failed bool
	jobID  string
}

func (c *retryCommand) parseFlags(a *app, args []string) error {
	s := newSettings("retry", a.env)
	s.bind(c.common.bindings()...)
	s.bind(&binding{flag: "failed", ptr: &c.failed, def: false, help: "retry failed jobs (required)"})
	s.bind(&binding{flag: "job", ptr: &c.jobID, meta: "ID", help: "only this job", check: func(v string) error {
		if v == "" {
			return nil
		}
		var id pgtype.UUID
		if err := id.Scan(v); err != nil {
			return errors.New("must be a job ID (a UUID)")
		}
		return nil
	}})
	if err := a.parseNoArgs(s, args, "jobrelay retry --failed [--job ID] [flags]", retryHelp); err != nil {
		return err
	}
	if !c.failed {
		return usagef("retry: say --failed (optionally with --job ID): only failed jobs can be retried")
	}
	return nil
}

func (c *retryCommand) run(ctx context.Context, a *app) error {
	common, jobID := c.common, c.jobID
	cl, err := openClients(ctx, &common, 2)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := retry.Failed(ctx, cl.pool, cl.rdb, common.Stream, jobID)
	if _, left := errors.AsType[*retry.DeadLettersLeftError](err); err != nil && !left {
		return err // nothing changed
	}
	fmt.Fprintf(a.stdout, "%d failed job(s) sent back to pending_review\n", len(res.JobIDs))
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d dead letter(s) removed from %s\n", res.DeadLettersRemoved, res.DeadLetterStream)
	return nil
}
