package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// JobRow is a job's whole row, as an operator reads it. A NULL column is an
// invalid pgtype value.
type JobRow struct {
	ID          string
	Site        pgtype.Text
	JobURL      pgtype.Text
	Title       pgtype.Text
	Company     pgtype.Text
	Location    pgtype.Text
	Description pgtype.Text
	Status      string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Stream and StreamID are the stream and entry of the latest publish.
	Stream     pgtype.Text
	StreamID   pgtype.Text
	EnqueuedAt pgtype.Timestamptz
	Attempts   int32 // publish attempts so far
	LastError  pgtype.Text
}

// GetJob reads one job by its ID, by primary key. It returns ErrNotFound
// when no job has that ID, or when id is not a job ID.
func GetJob(ctx context.Context, q DBTX, id string) (JobRow, error) {
	var b [16]byte
	if err := parseUUID(id, &b); err != nil {
		return JobRow{}, fmt.Errorf("read job: %w: %w", err, ErrNotFound)
	}
	var j JobRow
	err := q.QueryRow(ctx, `
SELECT id::text, site, job_url, title, company, location, description, status,
       created_at, updated_at, stream, stream_id, enqueued_at, attempts, last_error
FROM jobs WHERE id = $1`, b).
		Scan(&j.ID, &j.Site, &j.JobURL, &j.Title, &j.Company, &j.Location, &j.Description, &j.Status,
			&j.CreatedAt, &j.UpdatedAt, &j.Stream, &j.StreamID, &j.EnqueuedAt, &j.Attempts, &j.LastError)
	if errors.Is(err, pgx.ErrNoRows) {
		return JobRow{}, fmt.Errorf("read job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return JobRow{}, fmt.Errorf("read job %s: %w", id, err)
	}
	return j, nil
}
