// Package db is jobrelay's access to PostgreSQL: the connection pool, the
// migrations, the Job type and every SQL statement the relay, the consumers
// and the commands run. No SQL lives outside this package.
package db

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
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
	if err := CheckExecMode(cfg.ConnConfig); err != nil {
		return nil, fmt.Errorf("database URL %s: %w", RedactURL(databaseURL), err)
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

// CheckExecMode refuses the query modes jobrelay's statements cannot run
// in: exec and simple_protocol (default_query_exec_mode in the URL) send
// parameters as text without their types, which the uuid arrays of the
// batch statements need. Behind PgBouncer in transaction mode without
// prepared statement support (before 1.21, or max_prepared_statements =
// 0), use cache_describe: it prepares nothing that outlives a statement.
func CheckExecMode(cfg *pgx.ConnConfig) error {
	if mode := cfg.DefaultQueryExecMode; mode == pgx.QueryExecModeExec || mode == pgx.QueryExecModeSimpleProtocol {
		return fmt.Errorf("default_query_exec_mode=%s is not supported (jobrelay's statements need the parameter types the server describes): use cache_describe behind PgBouncer, or leave it unset",
			cfg.DefaultQueryExecMode)
	}
	return nil
}

// redactedURL is what a connection string that cannot be parsed is shown
// as: it might hold a password anywhere.
const redactedURL = "(unparsable URL, hidden)"

// RedactURL returns a connection string fit for logs and messages. In a URL
// (postgres://, redis://, rediss://, …) the userinfo password and the values
// of secret query parameters (password, sslpassword, and any name with
// "password", "passwd", "secret" or "token" in it) become "xxxxx"; in a
// key=value DSN ("host=db password=x") the values of the same keys do. A
// string that is neither is hidden whole.
func RedactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		if strings.Contains(raw, "=") {
			return dsnSecret.ReplaceAllString(raw, "${1}xxxxx")
		}
		return redactedURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return redactedURL
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			key, _, _ := strings.Cut(p, "=")
			if name, err := url.QueryUnescape(key); err != nil || secretParam(name) {
				params[i] = key + "=xxxxx"
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	return u.Redacted()
}

// secretParam reports whether a query parameter or DSN key holds a secret.
func secretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "secret", "token"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// dsnSecret matches a secret key of a key=value DSN and its value, quoted
// (libpq's 'single quotes', with \' and \\ escapes) or not.
var dsnSecret = regexp.MustCompile(`(?i)((?:^|\s)[a-z_]*(?:password|passwd|secret|token)[a-z_]*\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s']\S*|'.*)`)

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
