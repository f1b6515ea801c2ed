package db_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// gooseCLI runs the goose CLI of the goose version this module requires, in
// the module's root, and returns its combined output.
func gooseCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx := testenv.Context(t)
	list, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/pressly/goose/v3").Output()
	require.NoError(t, err, "the goose version go.mod requires")
	version := strings.TrimSpace(string(list))
	// Only the postgres driver: the others cost minutes of building.
	cmd := exec.CommandContext(ctx, "go", append([]string{"run",
		"-tags", "no_clickhouse no_libsql no_mssql no_mysql no_sqlite3 no_vertica no_ydb",
		"github.com/pressly/goose/v3/cmd/goose@" + version}, args...)...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOSE_DRIVER=", "GOOSE_DBSTRING=", "GOOSE_MIGRATION_DIR=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "goose %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// The migrations folder holds goose's files and nothing else: the goose CLI
// validates it and applies it as the binary does.
func TestGooseCLI(t *testing.T) {
	t.Parallel()
	out := gooseCLI(t, "-dir", "goose", "-v", "validate")
	for _, name := range []string{"00001_create_jobs.sql", "00002_add_job_status_field.sql",
		"00003_relay_bookkeeping.sql", "00004_job_stream.sql", "00006_reviewed_index.sql"} {
		require.Contains(t, out, name)
	}

	ctx := testenv.Context(t)
	embedded := testenv.NewSchema(t)
	cli := testenv.NewEmptySchema(t)
	gooseCLI(t, "-dir", "goose", "postgres", cli.URL, "up")
	require.Equal(t, schemaShape(ctx, t, embedded), schemaShape(ctx, t, cli))
}
