package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Job statuses, as the jobs_status_check constraint allows them.
const (
	StatusPendingReview = "pending_review"
	StatusInReview      = "in_review"
	StatusReviewed      = "reviewed"
	StatusFailed        = "failed"
	StatusArchived      = "archived"
)

// AllStatuses lists every status in the order of a job's life, for reports.
func AllStatuses() []string {
	return []string{StatusPendingReview, StatusInReview, StatusReviewed, StatusFailed, StatusArchived}
}

// Job is a job posting as the relay publishes it: the columns that go into a
// stream entry. A NULL column is an invalid pgtype.Text.
type Job struct {
	ID       string
	Site     pgtype.Text
	JobURL   pgtype.Text
	Title    pgtype.Text
	Company  pgtype.Text
	Attempts int32       // publish attempts before this one
	Priority int16       // higher is reviewed sooner; 0 unless the application sets it
	Tenant   pgtype.Text // the job's tenant; NULL is the default tenant
}

// claimSQL locks the pending jobs of highest priority, oldest first within
// a priority. SKIP LOCKED lets any number of relays claim side by side: each
// one gets rows no other open transaction holds, so no job is claimed twice,
// and none waits for another relay's lock. It reads the partial index on
// (priority DESC, created_at), so its cost does not grow with the number of
// reviewed jobs, and with every job at priority 0 it costs what an oldest
// first claim does. description is not selected: it is not published.
const claimSQL = `
SELECT ` + claimColumns + `
FROM jobs
WHERE status = 'pending_review'
ORDER BY priority DESC, created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`

// claimOldestSQL is claimSQL oldest first, whatever the priority: the
// claims that keep lower priorities flowing (see ClaimParams.Oldest).
const claimOldestSQL = `
SELECT ` + claimColumns + `
FROM jobs
WHERE status = 'pending_review'
ORDER BY created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`

// claimColumns are the columns a claim reads, as scanJobs scans them.
const claimColumns = `id::text, site, job_url, title, company, attempts, priority, tenant`

// markInReviewSQL records a published batch in one statement. The status guard
// is belt and braces: the rows are locked by this transaction since the claim.
// The stream is one parameter for the whole batch; "" records none.
const markInReviewSQL = `
UPDATE jobs
SET status = 'in_review', stream_id = b.stream_id, enqueued_at = $3,
    stream = NULLIF($4, ''), attempts = attempts + 1, updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS b(id, stream_id)
WHERE jobs.id = b.id AND jobs.status = 'pending_review'`

// markUnpublishableSQL fails claimed jobs that cannot become a stream entry,
// so they stop blocking the rows behind them.
const markUnpublishableSQL = `
UPDATE jobs
SET status = 'failed', last_error = b.last_error, updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS b(id, last_error)
WHERE jobs.id = b.id AND jobs.status = 'pending_review'`

// claimExceptSQL and claimOldestExceptSQL pass over the jobs in $2: rows
// the relay could neither relay nor mark failed (see BeginClaimWith).
const (
	claimExceptSQL = `
SELECT ` + claimColumns + `
FROM jobs
WHERE status = 'pending_review' AND id <> ALL($2::uuid[])
ORDER BY priority DESC, created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`
	claimOldestExceptSQL = `
SELECT ` + claimColumns + `
FROM jobs
WHERE status = 'pending_review' AND id <> ALL($2::uuid[])
ORDER BY created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`
)

// BeginClaim begins a transaction on conn and claims up to limit pending jobs,
// highest priority first, in one round trip. The jobs are appended to
// dst[:0]. On error the caller must call Rollback. The transaction stays
// open for CommitInReview.
func BeginClaim(ctx context.Context, conn *pgx.Conn, limit int, dst []Job) ([]Job, error) {
	jobs, _, err := BeginClaimWith(ctx, conn, &ClaimParams{Limit: limit}, dst)
	return jobs, err
}

// ClaimParams says which pending jobs a claim takes, and in which order.
type ClaimParams struct {
	// Limit is the most jobs claimed.
	Limit int
	// Except lists jobs to pass over.
	Except []string
	// Oldest claims the oldest jobs whatever their priority, instead of
	// the highest priority first: a relay makes some of its claims so,
	// that lower priorities keep flowing under a constant load of higher
	// ones.
	Oldest bool
	// Fair, if not nil, shares the claim between the tenants that have
	// pending work (see FairParams).
	Fair *FairParams
	// Timeout, if positive, bounds each statement of the transaction and
	// each wait between them: past it PostgreSQL cancels the statement, or
	// ends the session of a transaction left idle, and so releases the
	// claim's row locks. It is set for the transaction alone (SET LOCAL),
	// so it holds behind a transaction pooler.
	Timeout time.Duration
}

// Claimed is what a claim found besides its jobs.
type Claimed struct {
	// More says whether more jobs may be pending: the claim took all it
	// could.
	More bool
	// Held says that jobs of some tenant were passed over because of its
	// jobs in flight (FairParams.MaxInFlight): they wait for jobs to be
	// reviewed, which sends no notification.
	Held bool
	// Tenants, when not nil, are the tenants with pending jobs, as a fair
	// claim found them: FairParams.Tenants of the claims that follow.
	Tenants []string
}

// BeginClaimWith begins a transaction on conn and claims the jobs p says,
// appended to dst[:0]. On error the caller must call Rollback. The
// transaction stays open for CommitInReview.
func BeginClaimWith(ctx context.Context, conn *pgx.Conn, p *ClaimParams, dst []Job) (jobs []Job, c Claimed, err error) {
	if p.Fair != nil {
		return beginFairClaim(ctx, conn, p, false, dst)
	}
	var b pgx.Batch
	if err := queueClaim(&b, p, dst, &jobs); err != nil {
		return nil, c, err
	}
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, c, fmt.Errorf("claim pending jobs: %w", err)
	}
	c.More = len(jobs) == p.Limit
	return jobs, c, nil
}

// ClaimMore claims the jobs p says in the transaction already open on
// conn, appended to dst[:0], in one round trip: a relay claims its next
// batch while it publishes the one it holds. The transaction's own row
// locks do not make SKIP LOCKED pass over its rows, so p.Except must list
// the jobs it has claimed already. p.Timeout is not set again: the
// transaction's own holds. On error the caller must call Rollback. (A
// savepoint around the claim would let the batch already held commit
// after a failed claim, but the subtransaction made every cycle slower:
// BenchmarkRelayCycle with one worker fell by a third.)
func ClaimMore(ctx context.Context, conn *pgx.Conn, p *ClaimParams, dst []Job) (jobs []Job, c Claimed, err error) {
	if p.Fair != nil {
		return nil, c, errors.New("claim more: a fair claim cannot run inside another claim's transaction")
	}
	except, err := uuids(p.Except)
	if err != nil {
		return nil, c, fmt.Errorf("claim more pending jobs: %w", err)
	}
	var b pgx.Batch
	queueClaimStatement(&b, p, except, dst, &jobs)
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, c, fmt.Errorf("claim more pending jobs: %w", err)
	}
	c.More = len(jobs) == p.Limit
	return jobs, c, nil
}

// queueClaim queues BEGIN and the claim p says (not a fair one), whose rows
// the batch appends to dst[:0] and stores in *jobs.
func queueClaim(b *pgx.Batch, p *ClaimParams, dst []Job, jobs *[]Job) error {
	except, err := uuids(p.Except)
	if err != nil {
		*jobs = dst[:0]
		return fmt.Errorf("claim pending jobs: %w", err)
	}
	queueBegin(b, p.Timeout) // nothing is queued on error
	queueClaimStatement(b, p, except, dst, jobs)
	return nil
}

// queueClaimStatement queues the claim p says (not a fair one), without
// BEGIN, passing over except (p.Except parsed), whose rows the batch
// appends to dst[:0] and stores in *jobs.
func queueClaimStatement(b *pgx.Batch, p *ClaimParams, except [][16]byte, dst []Job, jobs *[]Job) {
	*jobs = dst[:0]
	var q *pgx.QueuedQuery
	switch {
	case len(except) == 0 && !p.Oldest:
		q = b.Queue(claimSQL, p.Limit)
	case len(except) == 0:
		q = b.Queue(claimOldestSQL, p.Limit)
	case p.Oldest:
		q = b.Queue(claimOldestExceptSQL, p.Limit, except)
	default:
		q = b.Queue(claimExceptSQL, p.Limit, except)
	}
	q.Query(func(rows pgx.Rows) error {
		var err error
		*jobs, err = scanJobs(rows, *jobs)
		return err
	})
}

// scanJobs appends the rows of a claim (claimColumns) to jobs.
func scanJobs(rows pgx.Rows, jobs []Job) ([]Job, error) {
	for rows.Next() {
		var j Job
		if err := rows.Scan(&j.ID, &j.Site, &j.JobURL, &j.Title, &j.Company, &j.Attempts, &j.Priority, &j.Tenant); err != nil {
			return jobs, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// InReviewParams describes a published batch for CommitInReview.
type InReviewParams struct {
	IDs        []string  // published jobs
	StreamIDs  []string  // their entry IDs, index for index
	EnqueuedAt time.Time // the enqueued_at written into every entry
	Stream     string    // the stream they were published to, recorded per row for the reaper
	// Streams, if set, holds each job's stream (its partition), index for
	// index, in place of Stream.
	Streams []string

	FailedIDs    []string // claimed jobs that cannot be published
	FailedErrors []string // why, index for index
}

// CommitInReview marks the published jobs in_review, fails the unpublishable
// ones and commits, in one round trip. On error the caller must call Rollback;
// the transaction may or may not have committed only if the error came from
// the COMMIT itself (a lost connection), which the idempotent publish makes
// harmless.
func CommitInReview(ctx context.Context, conn *pgx.Conn, p *InReviewParams) error {
	var b pgx.Batch
	if err := queueInReview(&b, p); err != nil {
		return err
	}
	// If an UPDATE fails, PostgreSQL skips the COMMIT and leaves the
	// transaction aborted; Rollback ends it.
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("mark jobs in_review and commit: %w", err)
	}
	return nil
}

// MarkInReview marks the published jobs in_review and fails the
// unpublishable ones, as CommitInReview does, in one round trip, but leaves
// the transaction open: a relay records one batch while it publishes the
// next. On error the caller must call Rollback.
func MarkInReview(ctx context.Context, conn *pgx.Conn, p *InReviewParams) error {
	var b pgx.Batch
	if err := queueInReview(&b, p); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("mark jobs in_review: %w", err)
	}
	return nil
}

// CommitInReviewAndClaim is CommitInReview followed, in the same round
// trip, by BeginClaimWith for the next batch: a relay draining a backlog
// saves a round trip per batch. next must not be a fair claim (its tenant
// list takes round trips of its own). committed says whether the COMMIT
// succeeded, and is true when err is the claim's: the batch is recorded,
// and the claim's failed transaction is left for Rollback. On any error
// the caller must call Rollback; when committed is false, err is what
// CommitInReview would have returned.
func CommitInReviewAndClaim(ctx context.Context, conn *pgx.Conn, p *InReviewParams, next *ClaimParams, dst []Job) (jobs []Job, c Claimed, committed bool, err error) {
	if next.Fair != nil {
		return nil, c, false, errors.New("commit and claim: a fair claim cannot share the commit's round trip")
	}
	var b pgx.Batch
	if err := queueInReview(&b, p); err != nil {
		return nil, c, false, err
	}
	b.Queue("COMMIT").Exec(func(pgconn.CommandTag) error {
		committed = true
		return nil
	})
	// If an UPDATE fails, PostgreSQL skips the rest up to the batch's
	// end, the next BEGIN and claim included.
	claimErr := queueClaim(&b, next, dst, &jobs)
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		if committed {
			return nil, c, true, fmt.Errorf("claim pending jobs: %w", err)
		}
		return nil, c, false, fmt.Errorf("mark jobs in_review and commit: %w", err)
	}
	if claimErr != nil {
		return nil, c, true, claimErr // committed; the claim was not sent
	}
	c.More = len(jobs) == next.Limit
	return jobs, c, true, nil
}

// queueInReview queues the UPDATEs that record a published batch: the
// published jobs in_review, the unpublishable ones failed.
func queueInReview(b *pgx.Batch, p *InReviewParams) error {
	if len(p.IDs) > 0 {
		ids, err := uuids(p.IDs)
		if err != nil {
			return fmt.Errorf("mark jobs in_review: %w", err)
		}
		if p.Streams == nil {
			b.Queue(markInReviewSQL, ids, p.StreamIDs, p.EnqueuedAt, p.Stream)
		} else {
			// One UPDATE per stream, in the same round trip and transaction.
			byStream := map[string][]int{}
			var order []string
			for i, s := range p.Streams {
				if _, ok := byStream[s]; !ok {
					order = append(order, s)
				}
				byStream[s] = append(byStream[s], i)
			}
			for _, s := range order {
				part := byStream[s]
				pids, pstreamIDs := make([][16]byte, len(part)), make([]string, len(part))
				for k, i := range part {
					pids[k], pstreamIDs[k] = ids[i], p.StreamIDs[i]
				}
				b.Queue(markInReviewSQL, pids, pstreamIDs, p.EnqueuedAt, s)
			}
		}
	}
	if len(p.FailedIDs) > 0 {
		ids, err := uuids(p.FailedIDs)
		if err != nil {
			return fmt.Errorf("mark jobs failed: %w", err)
		}
		b.Queue(markUnpublishableSQL, ids, p.FailedErrors)
	}
	return nil
}

// Rollback ends the connection's transaction, if one is open. A connection
// whose state is unknown (broken mid-statement) is closed instead, which
// makes PostgreSQL roll back.
func Rollback(ctx context.Context, conn *pgx.Conn) error {
	if conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
		return nil
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = conn.Close(ctx)
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}
