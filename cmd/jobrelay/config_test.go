package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cmd  string
		env  map[string]string
		args []string
		want string
	}{
		{"relay", map[string]string{"BATCH_SIZE": "abc"}, nil, `BATCH_SIZE: must be a whole number, got "abc"`},
		{"relay", map[string]string{"BATCH_SIZE": "0"}, nil, `BATCH_SIZE: BatchSize must be between 1 and 5000, got "0"`},
		{"relay", nil, []string{"--batch-size", "9000"}, `--batch-size: BatchSize must be between 1 and 5000, got "9000"`},
		{"relay", map[string]string{"POLL_INTERVAL": "5"}, nil, "POLL_INTERVAL: must be a duration"},
		{"relay", map[string]string{"POLL_INTERVAL_MINUTES": "often"}, nil, `POLL_INTERVAL_MINUTES: must be a number of minutes, got "often"`},
		{"relay", map[string]string{"POLL_ONLY": "maybe"}, nil, "POLL_ONLY: must be true or false"},
		{"relay", map[string]string{"CYCLE_TIMEOUT": "1ms"}, nil, `CYCLE_TIMEOUT: CycleTimeout must be at least 10ms, got "1ms"`},
		{"relay", map[string]string{"DEDUP_TTL": "soon"}, nil, `DEDUP_TTL: must be a duration such as "500ms", "30s" or "5m", got "soon"`},
		{"relay", map[string]string{"DEDUP_TTL": "1s"}, nil, `DEDUP_TTL: DedupTTL must be at least CycleTimeout (30s): records must outlive a dead relay's locks, got "1s"`},
		{"relay", map[string]string{"REENQUEUE_AFTER": "-1m"}, nil, `REENQUEUE_AFTER: ReenqueueAfter must be positive, or -1 to disable the reaper, got "-1m"`},
		{"relay", map[string]string{"MAX_STREAM_LAG": "-5"}, nil, `MAX_STREAM_LAG: MaxStreamLag must be positive, or -1 to disable it, got "-5"`},
		{"relay", map[string]string{"TENANT_WEIGHTS": "acme:3"}, nil, `TENANT_WEIGHTS: must be tenant=weight pairs separated by commas, such as "acme=3,globex=2", got "acme:3"`},
		{"relay", map[string]string{"TENANT_WEIGHTS": "acme=3,acme=2"}, nil, `TENANT_WEIGHTS: names tenant "acme" twice`},
		{"relay", map[string]string{"TENANT_WEIGHTS": "acme=0"}, nil, `TENANT_WEIGHTS: TenantWeights gives tenant "acme" weight 0: must be between 1 and 1000`},
		{"relay", map[string]string{"TENANT_MAX_IN_FLIGHT": "-3"}, nil, `TENANT_MAX_IN_FLIGHT: TenantMaxInFlight must be positive, or -1 for no cap, got "-3"`},
		{"relay", map[string]string{"PRIORITY_STRICT": "always"}, nil, "PRIORITY_STRICT: must be true or false"},
		{"relay", map[string]string{"LOG_FORMAT": "xml"}, nil, "LOG_FORMAT: must be one of text, json"},
		{"relay", map[string]string{"LOG_LEVEL": "loud"}, nil, `LOG_LEVEL: must be debug, info, warn or error, got "loud"`},
		{"relay", map[string]string{"METRICS_ADDR": "9090"}, nil, "METRICS_ADDR: must be host:port"},
		{"relay", nil, []string{"--stream", ""}, "--stream: must not be empty"},
		{"relay", nil, []string{"--group="}, "--group: must not be empty"},
		{"relay", map[string]string{"DATABASE_URL": "postgres://u:hunter2@db:port/x"}, nil, `DATABASE_URL: is not a valid PostgreSQL URL, got "(unparsable URL, hidden)"`},
		{"relay", map[string]string{"DATABASE_URL": "mysql://u:hunter2@db/x"}, nil, `DATABASE_URL: is not a valid PostgreSQL URL, got "mysql://u:xxxxx@db/x"`},
		{"relay", map[string]string{"REDIS_URL": "http://u:hunter2@cache:6379"}, nil, `REDIS_URL: is not a valid Redis URL`},
		{"relay", map[string]string{"DATABASE_URL": "postgres://u:hunter2@db/x?default_query_exec_mode=exec"}, nil,
			`DATABASE_URL: default_query_exec_mode=exec is not supported (jobrelay's statements need the parameter types the server describes): use cache_describe behind PgBouncer, or leave it unset, got "postgres://u:xxxxx@db/x?default_query_exec_mode=exec"`},
		{"relay", map[string]string{"ARCHIVE_AFTER": "30s"}, nil, `ARCHIVE_AFTER: ArchiveAfter must be at least 1m0s, or -1 (or 0) to disable the archiver, got "30s"`},
		{"relay", map[string]string{"ARCHIVE_AFTER": "a month"}, nil, `ARCHIVE_AFTER: must be a duration such as "30d", "1d12h" or "36h", got "a month"`},
		{"relay", map[string]string{"LISTEN_DATABASE_URL": "mysql://u:hunter2@db/x"}, nil, `LISTEN_DATABASE_URL: is not a valid PostgreSQL URL, got "mysql://u:xxxxx@db/x"`},
		{"relay", map[string]string{"LISTEN_DATABASE_URL": "postgres://u:hunter2@db/x", "POLL_ONLY": "true"}, nil,
			`LISTEN_DATABASE_URL: ListenDatabaseURL cannot be combined with PollOnly: a relay that only polls does not LISTEN, got "postgres://u:xxxxx@db/x"`},
		{"consume", map[string]string{"CONCURRENCY": "0"}, nil, `CONCURRENCY: Concurrency must be between 1 and 10000, got "0"`},
		{"consume", map[string]string{"RECLAIM_IDLE": "1ms"}, nil, `RECLAIM_IDLE: ReclaimIdle must be at least 10ms, got "1ms"`},
		{"consume", map[string]string{"MAX_DELIVERIES": "0"}, nil, `MAX_DELIVERIES: MaxDeliveries must be between 1 and 1000, got "0"`},
		{"consume", map[string]string{"HANDLER_TIMEOUT": "0s"}, nil, `HANDLER_TIMEOUT: HandlerTimeout must be at least 1ms, got "0s"`},
		{"consume", map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, nil, `SHUTDOWN_TIMEOUT: ShutdownTimeout must be positive, or -1 to cancel handlers in flight at once, got "-1s"`},
		{"consume", map[string]string{"HANDLER": "crewai"}, nil, `HANDLER: unknown handler "crewai"`},
		{"consume", nil, []string{"--handler", "exec:"}, "HANDLER: exec handler needs a command"},
		{"run", map[string]string{"BATCH_SIZE": "x"}, nil, "BATCH_SIZE: must be a whole number"},
		{"relay", nil, []string{"--bogus"}, "relay: flag provided but not defined: -bogus (see --help)"},
		{"seed", nil, []string{"-n", "lots"}, "-n: must be a whole number"},
		{"migrate", nil, []string{"sideways"}, `migrate: unknown subcommand "sideways"`},
		{"migrate", nil, []string{"down-to", "x"}, "migrate down-to: version must be a whole number"},
		{"retry", nil, nil, "retry: say --failed"},
		{"retry", nil, []string{"--failed", "--job", "42"}, "--job: must be a job ID (a UUID)"},
		{"status", nil, []string{"--max-lag", "-1"}, "--max-lag: must be a whole number"},
		{"frobnicate", nil, nil, `unknown command "frobnicate"`},
	} {
		t.Run(tc.cmd+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runInProcess(t, tc.env, append([]string{tc.cmd}, tc.args...)...)
			require.Equal(t, 2, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Contains(t, stderr, tc.want)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			require.NotContains(t, stderr, "hunter2", "password leaked")
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runInProcess(t, nil, "--help")
	require.Zero(t, code)
	for _, c := range commands() {
		require.Contains(t, stdout, c.name)
	}
	for cmd, vars := range map[string][]string{
		"relay":   {"DATABASE_URL", "REDIS_URL", "JOB_REVIEW_QUEUE_NAME", "POLL_INTERVAL", "BATCH_SIZE", "JOB_REVIEW_GROUP", "LOG_FORMAT", "LOG_LEVEL", "METRICS_ADDR", "POLL_ONLY", "LISTEN_DATABASE_URL", "CYCLE_TIMEOUT", "ARCHIVE_AFTER", "DEDUP_TTL", "REENQUEUE_AFTER", "MAX_STREAM_LAG", "--once"},
		"consume": {"CONCURRENCY", "RECLAIM_IDLE", "MAX_DELIVERIES", "HANDLER_TIMEOUT", "SHUTDOWN_TIMEOUT", "--handler", "exec:CMD", "http:URL"},
		"run":     {"BATCH_SIZE", "CONCURRENCY", "METRICS_ADDR"},
		"migrate": {"down-to", "DATABASE_URL"},
		"status":  {"--json", "--check", "XINFO GROUPS"},
		"seed":    {"-n N"},
		"retry":   {"--failed", "--job"},
		"version": {"version"},
	} {
		code, stdout, stderr := runInProcess(t, nil, cmd, "--help")
		require.Zero(t, code, stderr)
		require.Contains(t, stdout, "Usage: jobrelay "+cmd)
		for _, v := range vars {
			require.Contains(t, stdout, v, "%s --help", cmd)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runInProcess(t, nil, "version")
	require.Zero(t, code)
	require.Regexp(t, `^jobrelay \S+ \(commit \S+, go1\.\d+`, stdout)
}

// relayStart runs `relay --once` on an empty pipeline and returns the
// attributes of its start-up log line.
func relayStart(t *testing.T, dir string, env []string, args ...string) map[string]any {
	t.Helper()
	p := start(t, dir, env, append([]string{"relay", "--once"}, args...)...)
	require.Zero(t, p.Wait(time.Minute), p.Output())
	lines := p.Logged("jobrelay relay: starting")
	require.Len(t, lines, 1)
	return lines[0]
}

func TestSettingsPrecedence(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte(
		"# the old poller's .env\nBATCH_SIZE=7\nPOLL_INTERVAL_MINUTES=2\nCYCLE_TIMEOUT=\"12s\"\n"), 0o600))

	got := relayStart(t, dir, pl.env)
	require.EqualValues(t, 7, got["batch_size"], ".env is read")
	require.Equal(t, "2m0s", got["poll_interval"], "POLL_INTERVAL_MINUTES is honoured")
	require.Equal(t, "12s", got["cycle_timeout"])

	got = relayStart(t, dir, append(pl.env, "BATCH_SIZE=", "CYCLE_TIMEOUT="))
	require.EqualValues(t, 7, got["batch_size"], "an empty variable counts as unset (compose passes ${VAR:-} so)")
	require.Equal(t, "12s", got["cycle_timeout"])

	got = relayStart(t, dir, append(pl.env, "BATCH_SIZE=8", "POLL_INTERVAL=90s"))
	require.EqualValues(t, 8, got["batch_size"], "the environment wins over .env")
	require.Equal(t, "1m30s", got["poll_interval"], "POLL_INTERVAL wins over POLL_INTERVAL_MINUTES")

	got = relayStart(t, dir, append(pl.env, "BATCH_SIZE=8"), "--batch-size", "9", "--poll-interval", "3s")
	require.EqualValues(t, 9, got["batch_size"], "flags win")
	require.Equal(t, "3s", got["poll_interval"])

	// A bad .env value is refused like any other, naming the variable.
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte("BATCH_SIZE=lots\n"), 0o600))
	code, out := runBinary(t, dir, pl.env, "relay", "--once")
	require.Equal(t, 2, code)
	require.Contains(t, out, `"msg":"jobrelay: BATCH_SIZE: must be a whole number, got \"lots\""`, "JSON, as LOG_FORMAT says")
}

func TestPasswordsAreNotLogged(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	// Trust authentication ignores the password; the URL still carries it.
	env := append([]string{}, pl.env...)
	env[0] = strings.Replace(env[0], "postgres@", "postgres:hunter2@", 1)
	u, err := url.Parse(testenv.RedisURL())
	require.NoError(t, err)
	u.User = url.UserPassword("", "hunter3")
	env[1] = "REDIS_URL=" + u.String()
	env = append(env, "LISTEN_DATABASE_URL="+strings.Replace(pl.schema.URL, "postgres@", "postgres:hunter4@", 1))
	p := start(t, t.TempDir(), env, "relay", "--once")
	p.Wait(time.Minute)
	out := p.Output()
	require.Contains(t, out, "postgres:xxxxx@")
	require.Contains(t, out, `"listen_database_url":"postgres://postgres:xxxxx@`)
	require.NotContains(t, out, "hunter2")
	require.NotContains(t, out, "hunter3")
	require.NotContains(t, out, "hunter4")
}
