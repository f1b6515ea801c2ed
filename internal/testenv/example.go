package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Example is an empty PostgreSQL schema and a stream name of one runnable
// Example function's own. An example has no *testing.T to clean up after
// it, so it calls Close; and it fails by panicking.
type Example struct {
	// DatabaseURL is DatabaseURL with search_path set to the schema.
	DatabaseURL string
	// RedisURL is RedisURL.
	RedisURL string
	// Stream is a stream name no other test uses.
	Stream string

	schema string
}

// NewExample creates the schema. Close drops it, and deletes the stream
// and its keys.
func NewExample() *Example {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	e := &Example{RedisURL: RedisURL(), Stream: "test:example-" + suffix, schema: "test_example_" + suffix}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		panic(fmt.Sprintf("connect to PostgreSQL: %v", err))
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{e.schema}.Sanitize()); err != nil {
		panic(fmt.Sprintf("create schema: %v", err))
	}
	u, err := url.Parse(DatabaseURL())
	if err != nil {
		panic(fmt.Sprintf("parse TEST_DATABASE_URL: %v", err))
	}
	q := u.Query()
	q.Set("search_path", e.schema)
	u.RawQuery = q.Encode()
	e.DatabaseURL = u.String()
	return e
}

// Close drops the schema and deletes the stream's keys. Close the pools
// and clients of the example first.
func (e *Example) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		panic(fmt.Sprintf("connect to PostgreSQL: %v", err))
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{e.schema}.Sanitize()+" CASCADE"); err != nil {
		panic(fmt.Sprintf("drop schema: %v", err))
	}
	opts, err := redis.ParseURL(e.RedisURL)
	if err != nil {
		panic(fmt.Sprintf("parse Redis URL: %v", err))
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	keys := []string{e.Stream}
	iter := rdb.Scan(ctx, 0, e.Stream+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		panic(fmt.Sprintf("scan example keys: %v", err))
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		panic(fmt.Sprintf("delete example keys: %v", err))
	}
}
