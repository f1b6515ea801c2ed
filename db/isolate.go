package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The relay's cycle runs a few statements over a whole batch. When one row's
// data makes a statement fail (a trigger of the application raises, a
// constraint is violated, a value is out of range), PostgreSQL aborts the
// statement and with it the transaction: a retry fails the same way, and the
// rows behind that one wait for good. The helpers below run the same
// statements over parts of a batch, each in a savepoint, so that the relay
// can bisect the batch down to the rows that fail and go on with the others
// in the same transaction. They cost round trips, so the relay uses them
// only after a cycle failed with a RowError.

// isolateSavepoint is the one savepoint the helpers hold at a time.
const isolateSavepoint = "jobrelay_isolate"

// constraintsImmediateSQL makes an isolating transaction check deferred
// constraints at the end of each statement (see BeginClaimIDs).
const constraintsImmediateSQL = "SET CONSTRAINTS ALL IMMEDIATE"

// claimIDsSQL is claimSQL for an isolating cycle: IDs only (a uuid always
// reads, whatever the other columns hold), passing over $2.
const claimIDsSQL = `
SELECT id::text
FROM jobs
WHERE status = 'pending_review' AND id <> ALL($2::uuid[])
ORDER BY priority DESC, created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`

// claimOldestIDsSQL is claimIDsSQL oldest first, whatever the priority.
const claimOldestIDsSQL = `
SELECT id::text
FROM jobs
WHERE status = 'pending_review' AND id <> ALL($2::uuid[])
ORDER BY created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`

// reclaimIDsSQL locks again the jobs of a cycle that failed, those still
// pending that no other relay holds.
const reclaimIDsSQL = `
SELECT id::text
FROM jobs
WHERE status = 'pending_review' AND id = ANY($1::uuid[])
ORDER BY created_at
FOR UPDATE SKIP LOCKED`

// loadJobsSQL reads the published columns of jobs the transaction holds,
// in claim order.
const loadJobsSQL = `
SELECT ` + claimColumns + `
FROM jobs
WHERE id = ANY($1::uuid[])
ORDER BY created_at`

// ClaimIDsParams says which jobs BeginClaimIDs locks.
type ClaimIDsParams struct {
	Limit int // at most this many pending jobs, highest priority first,
	// then oldest, as a claim takes them (see BeginClaimWith), or with
	// Oldest, oldest first whatever the priority;
	Oldest bool
	Except []string // passing over these;
	// Fair, if not nil, shares the claim between tenants as a fair claim
	// does (see FairParams), each tenant's jobs in the order above;
	Fair *FairParams
	Only []string // or, if not nil, those of these still pending
	// Timeout bounds the transaction as ClaimParams.Timeout does.
	Timeout time.Duration
}

// BeginClaimIDs begins an isolating transaction on conn and locks pending
// jobs, as BeginClaim does, but returns their IDs only: LoadJobs reads the
// rest. The transaction checks deferred constraints at the end of each
// statement (SET CONSTRAINTS ALL IMMEDIATE), not at COMMIT, so that a row
// that fails one fails in the statement that touched it. One round trip,
// or a fair claim's (see beginFairClaim), and c says what the claim found
// as a claim's Claimed does. On error the caller must call Rollback.
func BeginClaimIDs(ctx context.Context, conn *pgx.Conn, p *ClaimIDsParams) (ids []string, c Claimed, err error) {
	if p.Fair != nil && p.Only == nil {
		jobs, c, err := beginFairClaim(ctx, conn, &ClaimParams{Limit: p.Limit, Except: p.Except, Oldest: p.Oldest, Fair: p.Fair, Timeout: p.Timeout}, true, nil)
		for i := range jobs {
			ids = append(ids, jobs[i].ID)
		}
		return ids, c, err
	}
	var b pgx.Batch
	queueBegin(&b, p.Timeout)
	b.Queue(constraintsImmediateSQL)
	var q *pgx.QueuedQuery
	if p.Only != nil {
		only, err := uuids(p.Only)
		if err != nil {
			return nil, c, fmt.Errorf("claim pending jobs: %w", err)
		}
		q = b.Queue(reclaimIDsSQL, only)
	} else {
		except, err := uuids(p.Except)
		if err != nil {
			return nil, c, fmt.Errorf("claim pending jobs: %w", err)
		}
		query := claimIDsSQL
		if p.Oldest {
			query = claimOldestIDsSQL
		}
		q = b.Queue(query, p.Limit, except)
	}
	q.Query(func(rows pgx.Rows) error {
		var err error
		ids, err = pgx.AppendRows(ids, rows, pgx.RowTo[string])
		return err
	})
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, c, fmt.Errorf("claim pending jobs: %w", err)
	}
	c.More = len(ids) >= p.Limit
	return ids, c, nil
}

// LoadJobs reads the columns of jobs the transaction holds and appends them
// to dst, in a savepoint: if a row cannot be read, the transaction goes on
// without this statement.
func LoadJobs(ctx context.Context, conn *pgx.Conn, ids []string, dst []Job) ([]Job, error) {
	bin, err := uuids(ids)
	if err != nil {
		return dst, fmt.Errorf("read jobs: %w", err)
	}
	jobs := dst
	var b pgx.Batch
	b.Queue(loadJobsSQL, bin).Query(func(rows pgx.Rows) error {
		var err error
		jobs, err = scanJobs(rows, jobs)
		return err
	})
	if err := inSavepoint(ctx, conn, &b); err != nil {
		return dst, fmt.Errorf("read jobs: %w", err)
	}
	return jobs, nil
}

// MarkInSavepoint runs CommitInReview's UPDATEs, without the COMMIT, in a
// savepoint: if one fails, the transaction goes on as if neither had run.
func MarkInSavepoint(ctx context.Context, conn *pgx.Conn, p *InReviewParams) error {
	var b pgx.Batch
	if err := queueInReview(&b, p); err != nil {
		return err
	}
	if err := inSavepoint(ctx, conn, &b); err != nil {
		if len(p.IDs) > 0 {
			return fmt.Errorf("mark jobs in_review: %w", err)
		}
		return fmt.Errorf("mark jobs failed: %w", err)
	}
	return nil
}

// Commit commits the connection's transaction. On error the caller must
// call Rollback.
func Commit(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// inSavepoint sends b's statements between SAVEPOINT and RELEASE, in one
// round trip. If one of them fails, it rolls back to the savepoint (a
// second round trip), so that the transaction goes on as if they had not
// run, and returns the statement's error. If the rollback fails too, the
// transaction is lost: the error says so, and is no RowError.
func inSavepoint(ctx context.Context, conn *pgx.Conn, b *pgx.Batch) error {
	full := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+2)}
	full.Queue("SAVEPOINT " + isolateSavepoint)
	full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	full.Queue("RELEASE SAVEPOINT " + isolateSavepoint)
	err := conn.SendBatch(ctx, full).Close()
	if err == nil {
		return nil
	}
	if conn.IsClosed() || conn.PgConn().TxStatus() != 'E' {
		return err // not a failed statement in a live transaction
	}
	// The simple protocol: pgx would prepare a batch's statements first,
	// which an aborted transaction refuses.
	undo := "ROLLBACK TO SAVEPOINT " + isolateSavepoint + "; RELEASE SAVEPOINT " + isolateSavepoint
	if _, uerr := conn.PgConn().Exec(ctx, undo).ReadAll(); uerr != nil {
		return fmt.Errorf("roll back to savepoint after %w: %w", err, uerr)
	}
	return err
}
