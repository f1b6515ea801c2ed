package testenv

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBouncer is a pgbouncer process of one test, in front of the test
// PostgreSQL server, in transaction pooling mode: each transaction may run
// on another server connection, and session state (SET, prepared
// statements, LISTEN) does not follow a client from one to the next.
type PgBouncer struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
	done chan struct{}
	out  lockedBuffer
}

// PgBouncerPoolSize is the number of server connections the test
// pgbouncer keeps per database and user: fewer than its clients use, so
// that they share them.
const PgBouncerPoolSize = 4

// StartPgBouncer starts pgbouncer (pool_mode=transaction, auth_type=trust)
// on a free port, forwarding every database to the test PostgreSQL server,
// and stops it when the test ends. It refuses startup parameters it does
// not know, as a stock pgbouncer does: a client that sends session
// settings in its startup packet fails to connect. Run as root, pgbouncer
// runs as the postgres user (it refuses root).
func StartPgBouncer(t testing.TB) *PgBouncer {
	t.Helper()
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		t.Fatalf("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does): %v", err)
	}
	pgURL, err := url.Parse(DatabaseURL())
	if err != nil {
		t.Fatalf("parse the database URL: %v", err)
	}
	host, port, err := net.SplitHostPort(PostgresAddr(t))
	if err != nil {
		t.Fatalf("PostgreSQL address: %v", err)
	}
	// A directory the postgres user can read: t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "jobrelay-pgbouncer-") //nolint:usetesting // pgbouncer runs as the postgres user, which cannot enter the 0700 parent of t.TempDir
	if err != nil {
		t.Fatalf("pgbouncer directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("pgbouncer directory: %v", err)
	}
	b := &PgBouncer{t: t, port: freePort(t), done: make(chan struct{})}
	users := fmt.Sprintf("%q \"\"\n", cmp.Or(pgURL.User.Username(), "postgres"))
	ini := strings.Join([]string{
		"[databases]",
		"* = host=" + host + " port=" + port,
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(b.port),
		"unix_socket_dir =",
		"auth_type = trust",
		"auth_file = " + filepath.Join(dir, "users.txt"),
		"pool_mode = transaction",
		"default_pool_size = " + strconv.Itoa(PgBouncerPoolSize),
		"max_client_conn = 200",
		"log_connections = 0",
		"log_disconnections = 0",
		"",
	}, "\n")
	for name, text := range map[string]string{"users.txt": users, "pgbouncer.ini": ini} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postgres"}, args...)
	}
	b.cmd = exec.Command("pgbouncer", args...)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
		if t.Failed() {
			t.Logf("pgbouncer output:\n%s", b.out.String())
		}
	})
	b.waitReady(pgURL)
	return b
}

// waitReady waits until a query through pgbouncer succeeds.
func (b *PgBouncer) waitReady(pgURL *url.URL) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, b.URL(pgURL.String()))
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		select {
		case <-b.done:
			b.t.Fatalf("pgbouncer exited:\n%s", b.out.String())
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("pgbouncer on %s did not start: %v\n%s", b.Addr(), err, b.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is pgbouncer's host:port.
func (b *PgBouncer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// URL returns the PostgreSQL URL databaseURL with its host and port
// replaced by pgbouncer's.
func (b *PgBouncer) URL(databaseURL string) string {
	b.t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		b.t.Fatalf("parse the database URL: %v", err)
	}
	u.Host = b.Addr()
	return u.String()
}

// Output is what pgbouncer logged so far.
func (b *PgBouncer) Output() string { return b.out.String() }

// lockedBuffer is a bytes.Buffer that a process writes while a test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
