// Package testenv gives tests their own PostgreSQL schema, Redis stream
// names and, for fault tests, Redis servers of their own, so that every test
// runs in parallel against the real servers without seeing another's data.
package testenv

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
)

// DatabaseURL is TEST_DATABASE_URL, or the local server's test database.
func DatabaseURL() string {
	return cmp.Or(os.Getenv("TEST_DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// RedisURL is TEST_REDIS_URL, or the local server.
func RedisURL() string {
	return cmp.Or(os.Getenv("TEST_REDIS_URL"), "redis://127.0.0.1:6379/0")
}

// Context returns the test's context with a deadline: a hung test fails with
// its own stack rather than the whole binary's timeout.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Schema is a PostgreSQL schema that belongs to one test.
type Schema struct {
	Name string
	// Pool's connections have search_path set to the schema only, so a query
	// that reaches for another schema fails.
	Pool *pgxpool.Pool
	// URL is DatabaseURL with the search_path parameter, for subprocesses
	// and for code that opens its own pool.
	URL string
}

// NewSchema creates a schema with the jobrelay migrations applied, and drops
// it when the test ends.
func NewSchema(t testing.TB) *Schema {
	t.Helper()
	s := NewEmptySchema(t)
	if err := Migrate(Context(t), s.Pool); err != nil {
		t.Fatal(err)
	}
	return s
}

// Migrate applies the jobrelay migrations to the pool's schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := db.NewMigrator(ctx, pool, nil)
	if err != nil {
		return fmt.Errorf("migrator: %w", err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// SearchPathURL is the PostgreSQL URL rawURL with its search_path set to
// schema alone: what a subprocess or a pool of that schema connects with.
func SearchPathURL(rawURL, schema string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse the database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// TracedPool opens a pool to the schema whose connections, and the
// connections code opens with the pool's configuration, report every query
// to tracer (a pgx.QueryTracer, and a pgx.BatchTracer if it is one too).
// It is closed when the test ends.
func (s *Schema) TracedPool(t testing.TB, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(s.URL)
	if err != nil {
		t.Fatalf("parse the schema's URL: %v", err)
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(Context(t), cfg)
	if err != nil {
		t.Fatalf("open a traced pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewEmptySchema creates an empty schema and drops it when the test ends.
func NewEmptySchema(t testing.TB) *Schema {
	t.Helper()
	ctx := Context(t)
	name := uniqueName(t, "_", 40)
	admin, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		t.Fatalf("connect to PostgreSQL at %s: %v", db.RedactURL(DatabaseURL()), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, DatabaseURL())
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})

	schemaURL, err := SearchPathURL(DatabaseURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	s := &Schema{Name: name, URL: schemaURL}
	s.Pool, err = db.Open(ctx, s.URL, 6)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(s.Pool.Close) // runs before the drop: cleanups run last-in first-out
	return s
}

// NewDatabase creates a migrated database of its own with the given
// server encoding (such as SQL_ASCII or EUC_JP: an application's database
// need not be UTF-8), and drops it when the test ends. query is appended to
// its URL (e.g. "client_encoding=UTF8"). The pool is closed first.
func NewDatabase(t testing.TB, encoding, query string) *pgxpool.Pool {
	t.Helper()
	ctx := Context(t)
	name := "test_" + strings.ToLower(strings.ReplaceAll(encoding, "_", "")) + "_" + uniqueName(t, "_", 30)
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, DatabaseURL())
		if err != nil {
			return fmt.Errorf("connect to PostgreSQL at %s: %w", db.RedactURL(DatabaseURL()), err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := exec(ctx, "CREATE DATABASE "+ident+" ENCODING '"+encoding+"' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP DATABASE "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(DatabaseURL())
	if err != nil {
		t.Fatalf("parse the database URL: %v", err)
	}
	u.Path = "/" + name
	if query != "" {
		u.RawQuery = strings.TrimPrefix(u.RawQuery+"&"+query, "&")
	}
	pool, err := db.Open(ctx, u.String(), 4)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close) // before the drop: cleanups run last-in first-out
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// NewRedis returns a client of the shared test Redis, closed when the test
// ends.
func NewRedis(t testing.TB) *redis.Client {
	t.Helper()
	return newRedisClient(t, RedisURL())
}

func newRedisClient(t testing.TB, rawURL string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatalf("parse Redis URL: %v", err)
	}
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Stream returns a stream name of the test's own and deletes the stream,
// its partitions and their helper keys (see DeleteStream) when it ends.
func Stream(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	name := "test:" + uniqueName(t, "-", 60)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeleteStream(ctx, rdb, name); err != nil {
			t.Logf("delete test keys: %v", err)
		}
	})
	return name
}

// DeleteStream deletes the stream, its partitions, and their helper keys
// (dead letters, dedup records).
func DeleteStream(ctx context.Context, rdb redis.UniversalClient, stream string) error {
	keys := []string{stream}
	// Its partitions and old-style helper keys, then the helper keys of it
	// and of its partitions ("{<stream>}:dead", "{<stream>:3}:dead").
	for _, pattern := range []string{stream + ":*", "{" + stream + "}:*", "{" + stream + ":*}:*"} {
		iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan the keys of %s: %w", stream, err)
		}
	}
	for _, k := range keys { // one by one: a cluster refuses keys of several slots in one call
		if err := rdb.Unlink(ctx, k).Err(); err != nil {
			return fmt.Errorf("delete the keys of %s: %w", stream, err)
		}
	}
	return nil
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName builds a readable, unique, identifier-safe name from the test
// name and random bytes.
func uniqueName(t testing.TB, sep string, maxLen int) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), sep), sep)
	if room := maxLen - len("test_") - len(suffix) - 1; len(base) > room {
		base = base[:room]
	}
	return "test" + sep + base + sep + suffix
}

// ThroughProxy returns the schema's URL with its host and port replaced by
// the proxy's.
func (s *Schema) ThroughProxy(t testing.TB, p *Proxy) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("parse schema URL: %v", err)
	}
	u.Host = p.Addr()
	return u.String()
}

// PostgresAddr is the host:port of the test PostgreSQL server.
func PostgresAddr(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(DatabaseURL())
	if err != nil || u.Host == "" {
		t.Fatalf("TEST_DATABASE_URL must be a URL with a host: %v", err)
	}
	if u.Port() == "" {
		return u.Host + ":5432"
	}
	return u.Host
}
