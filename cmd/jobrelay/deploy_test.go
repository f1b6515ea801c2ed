package main

import (
	"debug/elf"
	"flag"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// variablesRead lists every environment variable the binary reads, from
// the commands' own help.
func variablesRead(t *testing.T) []string {
	t.Helper()
	envRe := regexp.MustCompile(`env ([A-Z_]+)`)
	seen := map[string]bool{}
	for _, c := range commands() {
		_, stdout, _ := runInProcess(t, nil, c.name, "--help")
		for _, m := range envRe.FindAllStringSubmatch(stdout, -1) {
			seen[m[1]] = true
		}
	}
	var vars []string
	for v := range seen {
		vars = append(vars, v)
	}
	slices.Sort(vars)
	return vars
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../../compose.yaml"},
		cli.WithWorkingDirectory("../.."),
		cli.WithEnv([]string{}), // defaults only: no .env, no host variables
		cli.WithDiscardEnvFile,
		cli.WithInterpolation(true),
	)
	require.NoError(t, err)
	project, err := opts.LoadProject(ctxT(t))
	require.NoError(t, err)
	return project
}

func TestCompose(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	require.ElementsMatch(t, []string{"postgres", "redis", "migrate", "relay", "consumer"}, p.ServiceNames())

	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		require.NoError(t, err)
		return s
	}
	depends := func(name string) map[string]string {
		out := map[string]string{}
		for dep, cfg := range svc(name).DependsOn {
			out[dep] = cfg.Condition
		}
		return out
	}

	pg := svc("postgres")
	require.Regexp(t, `^postgres:17`, pg.Image)
	require.NotNil(t, pg.HealthCheck)
	require.Contains(t, strings.Join(pg.HealthCheck.Test, " "), "pg_isready")
	require.NotEmpty(t, pg.Volumes)

	rd := svc("redis")
	require.Regexp(t, `^redis:(7\.[4-9]|[89])`, rd.Image)
	require.Contains(t, strings.Join(rd.Command, " "), "--appendonly yes")
	require.Contains(t, strings.Join(rd.HealthCheck.Test, " "), "ping")
	require.NotEmpty(t, rd.Volumes)

	require.Equal(t, []string{"migrate", "up"}, []string(svc("migrate").Command))
	require.Equal(t, map[string]string{"postgres": types.ServiceConditionHealthy}, depends("migrate"))

	for name, cmd := range map[string]string{"relay": "relay", "consumer": "consume"} {
		s := svc(name)
		require.Equal(t, []string{cmd}, []string(s.Command))
		require.NotNil(t, s.Build, "%s is built from the Dockerfile", name)
		require.Equal(t, map[string]string{"migrate": types.ServiceConditionCompletedSuccessfully, "redis": types.ServiceConditionHealthy},
			depends(name), "%s waits for the schema and for Redis", name)
		require.NotNil(t, s.Deploy.Replicas)
		require.Equal(t, 2, *s.Deploy.Replicas, "%s replicas", name)
		require.Equal(t, []string{"CMD", "jobrelay", "healthcheck"}, []string(s.HealthCheck.Test))
		require.Equal(t, "unless-stopped", s.Restart)
		require.NotEmpty(t, s.Ports, "%s exposes its metrics", name)
		require.EqualValues(t, 9090, s.Ports[0].Target)
	}

	for _, s := range p.Services {
		require.NotNil(t, s.Deploy, "%s: resource limits", s.Name)
		require.NotNil(t, s.Deploy.Resources.Limits, "%s: resource limits", s.Name)
		require.Positive(t, float32(s.Deploy.Resources.Limits.NanoCPUs), "%s: CPU limit", s.Name)
		require.Positive(t, int64(s.Deploy.Resources.Limits.MemoryBytes), "%s: memory limit", s.Name)
		require.NotEmpty(t, s.Restart, "%s: restart policy", s.Name)
	}

	// Every variable the binary reads reaches the jobrelay containers from
	// .env: TestComposeSetsOnlyItsOwnSettings, TestComposeWithTheLocalEnv.
	// Defaults reach the compose services by name, not localhost.
	env := svc("relay").Environment
	require.Contains(t, *env["DATABASE_URL"], "@postgres:5432/")
	require.Equal(t, "redis://redis:6379/0", *env["REDIS_URL"])
	require.Equal(t, ":9090", *env["METRICS_ADDR"])
}

func TestComposeTakesTheOldPollersEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := os.ReadFile("../../compose.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "compose.yaml"), b, 0o600))
	oldEnv := "DATABASE_URL=postgres://app:pw@db.internal/jobs\nPOLL_INTERVAL_MINUTES=3\nJOB_REVIEW_QUEUE_NAME=review_queue\nBATCH_SIZE=50\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte(oldEnv), 0o600))
	opts, err := cli.NewProjectOptions(nil,
		cli.WithWorkingDirectory(dir),
		cli.WithDefaultConfigPath,
		cli.WithEnv([]string{}),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithInterpolation(true),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(ctxT(t))
	require.NoError(t, err)
	relay, err := p.GetService("relay")
	require.NoError(t, err)
	env := relay.Environment
	require.Equal(t, "3", *env["POLL_INTERVAL_MINUTES"])
	require.NotContains(t, env, "POLL_INTERVAL", "unset, so POLL_INTERVAL_MINUTES applies")
	require.Equal(t, "review_queue", *env["JOB_REVIEW_QUEUE_NAME"])
	require.Equal(t, "50", *env["BATCH_SIZE"])
	require.Equal(t, "postgres://jobrelay:jobrelay@postgres:5432/jobrelay?sslmode=disable", *env["DATABASE_URL"],
		"the containers use compose's own PostgreSQL")
}

func TestComposeWithTheLocalEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"compose.yaml", "Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join("../..", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o600))
	}
	// .env as README says: .env.example copied and edited for local runs.
	example, err := os.ReadFile("../../.env.example")
	require.NoError(t, err)
	local := map[string]string{
		"DATABASE_URL":      "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"REDIS_URL":         "redis://127.0.0.1:6379/0",
		"METRICS_ADDR":      "127.0.0.1:9090", // "keeps it off the network", .env.example says
		"BATCH_SIZE":        "50",
		"POSTGRES_PASSWORD": "s3cret",
	}
	var dotenv strings.Builder
	for line := range strings.SplitSeq(string(example), "\n") {
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "#"), "=")
		if _, ok := local[name]; !ok {
			dotenv.WriteString(line + "\n")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(local)) {
		dotenv.WriteString(name + "=" + local[name] + "\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv.String()), 0o600))

	// The shell of someone who runs jobrelay locally may export the same.
	opts, err := cli.NewProjectOptions(nil,
		cli.WithWorkingDirectory(dir),
		cli.WithDefaultConfigPath,
		cli.WithEnv([]string{"DATABASE_URL=" + local["DATABASE_URL"], "REDIS_URL=" + local["REDIS_URL"]}),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithInterpolation(true),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, "jobrelay", p.Name)

	pg, err := p.GetService("postgres")
	require.NoError(t, err)
	_, err = p.GetService("redis")
	require.NoError(t, err)
	for _, name := range []string{"migrate", "relay", "consumer"} {
		s, err := p.GetService(name)
		require.NoError(t, err)
		env := s.Environment
		u, err := url.Parse(*env["DATABASE_URL"])
		require.NoError(t, err, name)
		require.Equal(t, "postgres:5432", u.Host, "%s reaches compose's PostgreSQL", name)
		pw, _ := u.User.Password()
		require.Equal(t, *pg.Environment["POSTGRES_USER"], u.User.Username(), name)
		require.Equal(t, "s3cret", pw, "%s: the password compose gives PostgreSQL", name)
		require.Equal(t, *pg.Environment["POSTGRES_PASSWORD"], pw, name)
		require.Equal(t, "/"+*pg.Environment["POSTGRES_DB"], u.Path, name)
		require.Equal(t, "redis://redis:6379/0", *env["REDIS_URL"], "%s reaches compose's Redis", name)
		require.Equal(t, ":9090", *env["METRICS_ADDR"], "%s serves metrics where its port is published", name)
		require.Equal(t, "50", *env["BATCH_SIZE"], "%s: other settings come from .env", name)
	}

	for _, s := range p.Services {
		require.Empty(t, s.ContainerName, "%s: a container name would keep it from scaling", s.Name)
		for _, port := range s.Ports {
			require.Equal(t, "127.0.0.1", port.HostIP, "%s publishes %d on the host's loopback only", s.Name, port.Target)
			require.Empty(t, port.Published, "%s: a fixed host port would keep --scale from starting a second one", s.Name)
		}
	}
	for _, name := range []string{"relay", "consumer"} {
		s, err := p.GetService(name)
		require.NoError(t, err)
		require.NotEmpty(t, s.Ports, "%s publishes its metrics", name)
	}

	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "Docker Compose 2.24", "README says which Compose runs compose.yaml")
}

// boundVariables are the bindings of every variable, by name: the one list
// that --help, README's table and .env.example follow.
func boundVariables(t *testing.T) map[string]*binding {
	t.Helper()
	out := map[string]*binding{}
	for _, b := range documentedBindings() {
		require.NotContains(t, out, b.env, "%s is bound twice", b.env)
		out[b.env] = b
	}
	// The commands' help lists the same variables.
	require.ElementsMatch(t, slices.Collect(maps.Keys(out)), variablesRead(t))
	return out
}

// Issue 10, item 1: .env.example lists exactly the bound variables, with
// the defaults of the Config constants.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	bound := boundVariables(t)

	b, err := os.ReadFile("../../.env.example")
	require.NoError(t, err)
	example := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(#?)([A-Z_]+)=(.*)$`).FindAllStringSubmatch(string(b), -1) {
		require.NotContains(t, example, m[2], ".env.example lists %s twice", m[2])
		example[m[2]] = m[3]
		bd, ok := bound[m[2]]
		require.True(t, ok, ".env.example lists %s, which nothing reads", m[2])
		if bd.def == nil && m[1] == "#" {
			continue // an example of a setting without a default of its own
		}
		want := bd.defaultText()
		require.Equal(t, want, strings.Trim(m[3], `"`), ".env.example: %s's default", m[2])
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(bound)), slices.Collect(maps.Keys(example)), ".env.example")

}

var update = flag.Bool("update", false, "rewrite README's settings table from the bindings")

// Issue 10, item 1: README's settings table is made of the bindings' help,
// so a setting is documented once. -update rewrites it.
func TestReadmeSettingsTable(t *testing.T) {
	t.Parallel()
	const (
		begin = "<!-- settings: made by go test ./cmd/jobrelay -run TestReadmeSettingsTable -update -->\n"
		end   = "<!-- end of settings -->\n"
	)
	var table strings.Builder
	table.WriteString("| variable | default | what it is |\n| --- | --- | --- |\n")
	seen := map[string]bool{}
	for _, b := range documentedBindings() {
		if seen[b.env] {
			continue // JOB_REVIEW_GROUP: the relay's and the consumers'
		}
		seen[b.env] = true
		def := b.defText
		if d := b.defaultText(); d != "" {
			def = "`" + d + "`"
		}
		fmt.Fprintf(&table, "| `%s` | %s | %s |\n", b.env, def, strings.ReplaceAll(b.help, "|", "\\|"))
	}

	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(readme)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	require.True(t, i >= 0 && j > i, "README marks its settings table with %q and %q", begin, end)
	want := text[:i+len(begin)] + table.String() + text[j:]
	if *update {
		require.NoError(t, os.WriteFile("../../README.md", []byte(want), 0o644))
		return
	}
	require.Equal(t, want, text, "README's settings table is stale: go test ./cmd/jobrelay -run TestReadmeSettingsTable -update")
	require.Contains(t, text, "Exit status", "README documents the exit statuses")
}

// Issue 10, item 1: compose passes every setting through from .env
// (env_file), and sets only what differs inside its network, so a new
// setting needs no line in compose.yaml and cannot get a default there
// that differs from the binary's.
func TestComposeSetsOnlyItsOwnSettings(t *testing.T) {
	t.Parallel()
	own := []string{"DATABASE_URL", "REDIS_URL", "METRICS_ADDR", "LOG_FORMAT"} // its services, its ports, JSON logs
	bound := boundVariables(t)
	opts, err := cli.NewProjectOptions([]string{"../../compose.yaml"},
		cli.WithWorkingDirectory("../.."),
		cli.WithEnv([]string{}),
		cli.WithoutEnvironmentResolution, // env_file as written, not merged into environment
		cli.WithInterpolation(true),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(ctxT(t))
	require.NoError(t, err)
	for _, name := range []string{"migrate", "relay", "consumer"} {
		s, err := p.GetService(name)
		require.NoError(t, err)
		require.ElementsMatch(t, own, slices.Collect(maps.Keys(s.Environment)), "%s: compose sets only its own settings", name)
		for _, v := range own {
			require.Contains(t, bound, v)
		}
		require.Len(t, s.EnvFiles, 1, name)
		require.Equal(t, ".env", filepath.Base(s.EnvFiles[0].Path), name)
		require.False(t, bool(s.EnvFiles[0].Required), "%s: .env is optional", name)
	}
}

// TestDockerBuild checks what the Dockerfile promises that can be checked
// without a Docker engine: its build command gives a static binary, and
// the final image runs it as a non-root user.
func TestDockerBuild(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	text := string(df)
	require.Contains(t, text, "AS build")
	require.Contains(t, text, "CGO_ENABLED=0 go build")
	require.Regexp(t, `(?m)^FROM gcr\.io/distroless/static[^ ]*:nonroot$`, text, "a minimal final image with CA certificates")
	require.Regexp(t, `(?m)^USER nonroot`, text)
	require.Regexp(t, `(?m)^ENTRYPOINT \["/usr/local/bin/jobrelay"\]$`, text)
	require.Regexp(t, `(?m)^ARG VERSION`, text)
	ignore, err := os.ReadFile("../../.dockerignore")
	require.NoError(t, err)
	require.Contains(t, string(ignore), ".env")

	// TestMain built the binary with the Dockerfile's command.
	f, err := elf.Open(binary)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "the binary needs a dynamic loader")
	}
	v, err := exec.Command(binary, "version").Output()
	require.NoError(t, err)
	require.Regexp(t, `^jobrelay v0\.0\.0-test \(commit abc1234def, go1\.`, string(v))
}
