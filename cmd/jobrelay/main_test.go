package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// binary is the jobrelay binary built for the tests that run it as a
// subprocess (signals, .env files, crashes).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobrelay-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "jobrelay")
	// Built as the Dockerfile builds it: static, with the version stamped.
	if err := testenv.Build(context.Background(), binary, ".", "-s -w -X main.version=v0.0.0-test -X main.commit=abc1234def", os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runInProcess runs the CLI in this process with the given environment
// (nothing from the real one) and returns its exit status and output.
func runInProcess(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code = run(args, getenv, &out, &errOut)
	return code, out.String(), errOut.String()
}

// pipeline is a schema and stream for subprocess tests.
type pipeline struct {
	schema *testenv.Schema
	stream string
	env    []string
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	schema := testenv.NewSchema(t)
	stream := testenv.Stream(t, testenv.NewRedis(t))
	return &pipeline{schema: schema, stream: stream, env: testenv.ProcessEnv(schema.URL, testenv.RedisURL(), stream)}
}

// proc is a jobrelay subprocess whose JSON log lines are kept.
type proc = testenv.Process

// start runs the binary in dir with env and args.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	return testenv.StartProcess(t, binary, dir, env, args...)
}

// runBinary runs the binary to completion and returns status and output.
func runBinary(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	return testenv.RunProcess(t, binary, dir, env, args...)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	return testenv.Context(t)
}

// requireOnlyReviewed checks that the table holds jobs reviewed jobs and
// no job in any other status.
func requireOnlyReviewed(ctx context.Context, t *testing.T, pool *pgxpool.Pool, jobs int64) {
	t.Helper()
	counts, err := db.CountByStatus(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{db.StatusReviewed: jobs, db.StatusPendingReview: 0, db.StatusInReview: 0,
		db.StatusFailed: 0, db.StatusArchived: 0}, counts)
}
