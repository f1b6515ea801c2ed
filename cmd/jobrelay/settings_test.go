package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Issue 10, item 4: what the command line and the environment may not say.
func TestCommandLineMistakesExit2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		// Positional arguments nobody reads are mistakes, not ignored.
		{nil, []string{"relay", "once"}, `relay: unexpected argument "once"; usage: jobrelay relay [--once] [flags]`},
		{nil, []string{"seed", "100"}, `seed: unexpected argument "100"; usage: jobrelay seed -n N [flags]`},
		{nil, []string{"run", "now"}, `run: unexpected argument "now"`},
		{nil, []string{"consume", "--concurrency", "2", "extra"}, `consume: unexpected argument "extra"`},
		{nil, []string{"status", "all"}, `status: unexpected argument "all"`},
		{nil, []string{"version", "2"}, `version: unexpected argument "2"`},
		// Every duration has the Config's bounds, whichever variable set it.
		{map[string]string{"POLL_INTERVAL_MINUTES": "1e-9"}, []string{"relay"}, `POLL_INTERVAL_MINUTES: PollInterval must be at least 10ms, got "1e-9"`},
		{map[string]string{"POLL_INTERVAL_MINUTES": "0"}, []string{"relay"}, `POLL_INTERVAL_MINUTES: PollInterval must be at least 10ms, got "0"`},
		{map[string]string{"POLL_INTERVAL_MINUTES": "NaN"}, []string{"relay"}, `POLL_INTERVAL_MINUTES: must be a number of minutes`},
		{map[string]string{"POLL_INTERVAL_MINUTES": "1e300"}, []string{"relay"}, `POLL_INTERVAL_MINUTES: must be a number of minutes`},
		{map[string]string{"POLL_INTERVAL": "1ns"}, []string{"relay"}, `POLL_INTERVAL: PollInterval must be at least 10ms, got "1ns"`},
		{nil, []string{"relay", "--poll-interval", "5ms"}, `--poll-interval: PollInterval must be at least 10ms, got "5ms"`},
		{map[string]string{"POLL_INTERVAL": "1ns"}, []string{"run"}, `POLL_INTERVAL: PollInterval must be at least 10ms`},
		{map[string]string{"RELAY_WORKERS": "17"}, []string{"relay"}, `RELAY_WORKERS: Workers must be between 1 and 16, got "17"`},
		{map[string]string{"CONCURRENCY": "10001"}, []string{"run"}, `CONCURRENCY: Concurrency must be between 1 and 10000, got "10001"`},
		{map[string]string{"CYCLE_TIMEOUT": "1m", "DEDUP_TTL": "30s"}, []string{"relay"}, `DEDUP_TTL: DedupTTL must be at least CycleTimeout (1m0s)`},
		// The metrics address is checked at start.
		{map[string]string{"METRICS_ADDR": ":99999"}, []string{"relay"}, `METRICS_ADDR: must be host:port or :port with a port from 0 to 65535`},
		{nil, []string{"consume", "--metrics-addr", "localhost:-1"}, `--metrics-addr: must be host:port`},
		{nil, []string{"healthcheck", "--metrics-addr", ":70000"}, `--metrics-addr: must be host:port`},
	} {
		t.Run(strings.Join(tc.args, " ")+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runInProcess(t, tc.env, tc.args...)
			require.Equal(t, 2, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			require.Contains(t, stderr, "jobrelay: "+tc.want)
		})
	}
}

// Issue 10, item 1: an error in .env names the variable too, and a
// variable that is valid alone but not with another names the one Config
// field that validate rejects.
func TestValidationErrorNamesTheVariable(t *testing.T) {
	t.Parallel()
	code, _, stderr := runInProcess(t, map[string]string{"BATCH_SIZE": "5001"}, "relay")
	require.Equal(t, 2, code)
	require.Equal(t, "jobrelay: BATCH_SIZE: BatchSize must be between 1 and 5000, got \"5001\"\n", stderr)
	// A flag wins, and is named as a flag.
	code, _, stderr = runInProcess(t, map[string]string{"BATCH_SIZE": "5001"}, "relay", "--batch-size", "0")
	require.Equal(t, 2, code)
	require.Equal(t, "jobrelay: --batch-size: BatchSize must be between 1 and 5000, got \"0\"\n", stderr)
}

// Issue 10, item 4: flags may follow the subcommand of migrate, and a
// version to roll back to must exist.
func TestMigrateFlagsAfterTheVerb(t *testing.T) {
	t.Parallel()
	schema := testenv.NewEmptySchema(t)
	// The environment points elsewhere: only the flag can reach the schema.
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:" + closedPort(t) + "/none"}

	code, stdout, stderr := runInProcess(t, env, "migrate", "up", "--database-url", schema.URL)
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 6")

	code, stdout, stderr = runInProcess(t, env, "migrate", "down-to", "2", "--database-url", schema.URL)
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "database version: 2")

	code, _, stderr = runInProcess(t, env, "migrate", "down-to", "7", "--database-url", schema.URL)
	require.Equal(t, 2, code, stderr)
	require.Equal(t, "jobrelay: migrate down-to 7: no migration has version 7 (the versions are 0 for none, 1, 2, 3, 4, 5, 6)\n", stderr)

	code, stdout, stderr = runInProcess(t, env, "migrate", "--database-url", schema.URL, "status")
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "pending", "3 to 5 are rolled back")

	code, _, stderr = runInProcess(t, env, "migrate", "up", "now", "--database-url", schema.URL)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "migrate up takes no argument")
}

// Issue 10, item 4: the exit statuses are documented in every command's
// help.
func TestHelpDocumentsExitStatuses(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		code, stdout, _ := runInProcess(t, nil, c.name, "--help")
		require.Zero(t, code)
		require.Contains(t, stdout, "Exit status: 0", c.name)
		require.Contains(t, stdout, "2 bad usage or configuration", c.name)
	}
}

// Issue 10, item 5: run's JSON lines have no key twice, durations read as
// "5m0s", and the migration line says what happened.
func TestRunLogsReadWell(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	empty := testenv.NewEmptySchema(t)
	env := append(withoutVar(pl.env, "DATABASE_URL"), "DATABASE_URL="+empty.URL, "LOG_LEVEL=debug")

	p := start(t, t.TempDir(), env, "run")
	require.Eventually(t, func() bool { return len(p.Logged("relay: started")) == 1 || p.Exited() }, time.Minute, 5*time.Millisecond)
	p.Signal(syscall.SIGTERM)
	require.Zero(t, p.Wait(time.Minute))
	for line := range strings.Lines(p.Output()) {
		dup, err := duplicateKeys([]byte(line))
		require.NoError(t, err, line)
		require.Empty(t, dup, "a key twice in %s", line)
	}
	started := p.Logged("jobrelay run: starting")
	require.Len(t, started, 1)
	require.Equal(t, "5m0s", started[0]["poll_interval"])
	require.Equal(t, "30s", started[0]["shutdown_timeout"])
	require.Equal(t, "job_review_workers", started[0]["group"])
	migrated := p.Logged("now at version")
	require.Len(t, migrated, 1, p.Output())
	require.Equal(t, "jobrelay: applied 6 migrations, now at version 6", migrated[0]["msg"])

	// Once applied, the line says there was nothing to do.
	p = start(t, t.TempDir(), env, "run")
	require.Eventually(t, func() bool { return len(p.Logged("relay: started")) == 1 || p.Exited() }, time.Minute, 5*time.Millisecond)
	p.Signal(syscall.SIGTERM)
	require.Zero(t, p.Wait(time.Minute))
	require.Len(t, p.Logged("jobrelay: schema up to date at version 6"), 1, p.Output())
}

// duplicateKeys returns the keys that an object of the JSON text repeats
// (json.Unmarshal into a map keeps the last silently).
func duplicateKeys(text []byte) ([]string, error) {
	type frame struct {
		object, wantKey bool
		keys            map[string]bool
	}
	var (
		stack []*frame
		dups  []string
	)
	dec := json.NewDecoder(bytes.NewReader(text))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return dups, nil
		}
		if err != nil {
			return nil, err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].wantKey = true
				}
				continue
			}
			key := fmt.Sprint(tok)
			if top.keys[key] {
				dups = append(dups, key)
			}
			top.keys[key] = true
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true, keys: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				stack[len(stack)-1].wantKey = true
			}
		default:
			if top != nil {
				top.wantKey = true
			}
		}
	}
}

func TestDuplicateKeys(t *testing.T) {
	t.Parallel()
	dup, err := duplicateKeys([]byte(`{"a":1,"b":{"a":2,"c":[{"d":1,"d":2}]},"e":[1,2],"a":3}`))
	require.NoError(t, err)
	require.Equal(t, []string{"d", "a"}, dup)
	dup, err = duplicateKeys([]byte(`{"a":{},"b":[],"c":"x"}`))
	require.NoError(t, err)
	require.Empty(t, dup)
}
