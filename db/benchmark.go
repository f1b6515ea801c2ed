package db

// This file holds the statements only benchmarks run: large backlogs built
// by the server, and the old poller's one-job-at-a-time pattern as a
// baseline.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
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

// GenerateReviewedJobs inserts n jobs already reviewed, numbered from
// first, built by the server in one statement: the history of a table that
// has served for a while, for the benchmark of a table of millions. Their
// IDs follow their numbers (an ordered primary key fills fastest; the
// queries measured do not read it), their created_at and updated_at are
// spread over the 60 days before now, oldest first, and their description
// is short, to keep the table small on disk.
func GenerateReviewedJobs(ctx context.Context, q DBTX, first, n int) error {
	_, err := q.Exec(ctx, `
INSERT INTO jobs (id, site, job_url, title, company, location, description,
                  created_at, updated_at, status, stream_id, enqueued_at, attempts, stream)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       (ARRAY['linkedin','indeed','glassdoor','stepstone','otta','wellfound','remoteok','welcometothejungle'])[1 + i % 8],
       'https://jobs.example.com/' || i,
       (ARRAY['Backend Engineer','Data Engineer','Go Developer','Product Manager','Platform Engineer'])[1 + i % 5],
       (ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Stark','Wayne'])[1 + i % 7],
       'Remote (EU)',
       'Go, PostgreSQL, Redis.',
       t, t + interval '5 minutes', 'reviewed', '1-' || i, t + interval '1 minute', 1, 'job_review'
FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS i,
     LATERAL (SELECT now() - interval '60 days' + (i - $1::bigint) * (interval '60 days' / $2::bigint)) AS c(t)`, first, n)
	if err != nil {
		return fmt.Errorf("generate %d reviewed jobs: %w", n, err)
	}
	return nil
}

// Plan is what EXPLAIN says one of the hot queries reads.
type Plan struct {
	Query   string   // what the query is for
	Indexes []string // the indexes its plan reads
	SeqScan bool     // whether its plan reads a table sequentially
}

// ExplainHotQueries explains (without running them) the queries whose
// cost must not grow with the number of finished jobs: the relay's claim,
// the reaper's page, the metrics' backlog, status's counts and the
// archiver's batch, and says which indexes they read.
func ExplainHotQueries(ctx context.Context, q DBTX) ([]Plan, error) {
	zero := "00000000-0000-0000-0000-000000000000"
	now := time.Now()
	queries := []struct {
		name string
		sql  string
		args []any
	}{
		{"relay claim", claimSQL, []any{100}},
		{"reaper page", publishedBeforeSQL, []any{now, nil, zero, 100, "job_review", false}},
		{"metrics backlog", backlogSQL, nil},
		{"status counts", smallCountsSQL, nil},
		{"archiver batch", archiveSQL, []any{now.Add(-30 * 24 * time.Hour), 1000}},
	}
	var plans []Plan
	for _, query := range queries {
		var raw []byte
		if err := q.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+query.sql, query.args...).Scan(&raw); err != nil {
			return nil, fmt.Errorf("explain %s: %w", query.name, err)
		}
		var tree []struct {
			Plan planNode `json:"Plan"`
		}
		if err := json.Unmarshal(raw, &tree); err != nil {
			return nil, fmt.Errorf("explain %s: %w", query.name, err)
		}
		p := Plan{Query: query.name}
		for _, t := range tree {
			t.Plan.walk(&p)
		}
		slices.Sort(p.Indexes)
		p.Indexes = slices.Compact(p.Indexes)
		plans = append(plans, p)
	}
	return plans, nil
}

// planNode is a node of EXPLAIN's JSON output.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}

func (n *planNode) walk(p *Plan) {
	if n.IndexName != "" {
		p.Indexes = append(p.Indexes, n.IndexName)
	}
	if n.NodeType == "Seq Scan" {
		p.SeqScan = true
	}
	for i := range n.Plans {
		n.Plans[i].walk(p)
	}
}
