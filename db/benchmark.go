package db

// This file holds the statements only benchmarks run: large backlogs built
// by the server, and the old poller's one-job-at-a-time pattern as a
// baseline.

import (
	"context"
	"fmt"
)

// GenerateJobs inserts n varied sample jobs, pending_review, built by the
// server in one statement: faster than any client-side insert, for
// benchmarks that need large backlogs.
func GenerateJobs(ctx context.Context, q DBTX, n int) error {
	_, err := q.Exec(ctx, `
INSERT INTO jobs (site, job_url, title, company, location, description)
SELECT (ARRAY['linkedin','indeed','glassdoor','stepstone','otta','wellfound','remoteok','welcometothejungle'])[1 + i % 8],
       'https://jobs.example.com/' || i,
       (ARRAY['Senior ','','Staff ','Junior ','Lead '])[1 + i % 5] ||
       (ARRAY['Backend Engineer','Data Engineer','Site Reliability Engineer','Go Developer','Product Manager',
              'Machine Learning Engineer','Frontend Engineer','Platform Engineer','Security Engineer'])[1 + i % 9],
       (ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Stark','Wayne','Tyrell','Cyberdyne','Aperture'])[1 + i % 10] ||
       (ARRAY[' Labs',' Systems',' GmbH',' Inc.',' Cloud',' Analytics'])[1 + i % 6],
       (ARRAY['Berlin','London','Remote (EU)','New York','Paris','Amsterdam','Toronto'])[1 + i % 7],
       repeat('We build and run services with Go, PostgreSQL and Redis. ', 6)
FROM generate_series(1, $1) AS i`, n)
	if err != nil {
		return fmt.Errorf("generate %d jobs: %w", n, err)
	}
	return nil
}

// PendingBatch reads up to limit pending jobs without locking them: the old
// poller's query, kept for the benchmark's baseline.
func PendingBatch(ctx context.Context, q DBTX, limit int) ([]Job, error) {
	rows, err := q.Query(ctx, `
SELECT id::text, site, job_url, title, company, attempts
FROM jobs WHERE status = 'pending_review' ORDER BY created_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read pending jobs: %w", err)
	}
	defer rows.Close()
	var jobs []Job
	for rows.Next() {
		var j Job
		if err := rows.Scan(&j.ID, &j.Site, &j.JobURL, &j.Title, &j.Company, &j.Attempts); err != nil {
			return nil, fmt.Errorf("read pending jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// MarkOneInReview marks one job in_review, in a statement (and, on a pool,
// a transaction) of its own: the old poller's update, for the benchmark's
// baseline.
func MarkOneInReview(ctx context.Context, q DBTX, id, streamID string) error {
	_, err := q.Exec(ctx, `
UPDATE jobs SET status = 'in_review', stream_id = $2, enqueued_at = now(), attempts = attempts + 1, updated_at = now()
WHERE id = $1 AND status = 'pending_review'`, id, streamID)
	if err != nil {
		return fmt.Errorf("mark job in_review: %w", err)
	}
	return nil
}
