package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// NewJob is a job posting to insert, as the scraper would.
type NewJob struct {
	Site        string
	JobURL      string
	Title       string
	Company     string
	Location    string
	Description string
}

// Copier is what InsertJobs needs: a pool, a connection or a transaction.
type Copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

var newJobColumns = []string{"site", "job_url", "title", "company", "location", "description"}

// InsertJobs inserts jobs with COPY, the fastest way in: one statement for
// the whole slice, and one wake-up notification for it. They start
// pending_review.
func InsertJobs(ctx context.Context, q Copier, jobs []NewJob) (int64, error) {
	n, err := q.CopyFrom(ctx, pgx.Identifier{"jobs"}, newJobColumns,
		pgx.CopyFromSlice(len(jobs), func(i int) ([]any, error) {
			j := &jobs[i]
			return []any{j.Site, j.JobURL, j.Title, j.Company, j.Location, j.Description}, nil
		}))
	if err != nil {
		return n, fmt.Errorf("insert jobs: %w", err)
	}
	return n, nil
}

// InsertJob inserts one job and returns its ID.
func InsertJob(ctx context.Context, q DBTX, j NewJob) (string, error) {
	var id string
	err := q.QueryRow(ctx, `
INSERT INTO jobs (site, job_url, title, company, location, description)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id::text`, j.Site, j.JobURL, j.Title, j.Company, j.Location, j.Description).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert job: %w", err)
	}
	return id, nil
}
