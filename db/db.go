// Package db is jobrelay's access to PostgreSQL: the connection pool, the
// migrations, the Job type and every SQL statement the relay, the consumers
// and the commands run. No SQL lives outside this package.
package db

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotifyChannel is the channel the jobs triggers notify when a row becomes
// pending_review. The payload is the schema of the table, so relays of other
// schemas in the same database can tell the notification is not theirs.
const NotifyChannel = "jobrelay_pending_review"

// ErrNotFound is returned when a job asked for by ID does not exist.
var ErrNotFound = errors.New("not found")

// DBTX is what the queries need: a pool, a connection or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Batcher is a DBTX that also runs batches: a pool or a connection.
type Batcher interface {
	DBTX
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Open parses a PostgreSQL URL (or key=value DSN) and returns a pool. It does
// not connect: the first query does, so a server that is still starting is no
// error here. The URL's query parameters that are not libpq options (for
// example search_path) become session settings.
func Open(ctx context.Context, databaseURL string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", RedactURL(databaseURL), redactErr(err))
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "jobrelay"
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return pool, nil
}

// RedactURL returns a URL with its password replaced by "xxxxx", for logs.
// Strings that do not parse as URLs (key=value DSNs) are reduced to a
// placeholder rather than risk printing a password.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "(unparsable URL, hidden)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// redactErr drops the connection string that pgx's parse errors quote (its
// own redaction is best effort) and keeps what is wrong with it.
func redactErr(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		return errors.New(msg[i+3:])
	}
	return errors.New("invalid connection string")
}
