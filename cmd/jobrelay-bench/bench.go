package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// bench holds the connections every scenario shares.
type bench struct {
	o      options
	binary string
	peers  string // the peers' binary, if built (see buildPeers)
	stderr io.Writer
	admin  *pgx.Conn
	rdb    *redis.Client
}

func newBench(ctx context.Context, o options, binary string, stderr io.Writer) (*bench, error) {
	admin, err := pgx.Connect(ctx, o.dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	opts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return nil, err
	}
	opts.ContextTimeoutEnabled = true
	return &bench{o: o, binary: binary, stderr: stderr, admin: admin, rdb: redis.NewClient(opts)}, nil
}

func (b *bench) close() {
	_ = b.admin.Close(context.Background())
	_ = b.rdb.Close()
}

// pipeline is a schema and a stream of one run.
type pipeline struct {
	b      *bench
	schema string
	url    string
	pool   *pgxpool.Pool
	stream string
}

// newPipeline creates a migrated schema with n jobs pending (vacuumed and
// analyzed, as a table in service would be) and a stream name.
func (b *bench) newPipeline(ctx context.Context, n int) (*pipeline, error) {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := "bench_" + hex.EncodeToString(r[:])
	if _, err := b.admin.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return nil, err
	}
	schemaURL, err := testenv.SearchPathURL(b.o.dbURL, name)
	if err != nil {
		return nil, err
	}
	p := &pipeline{b: b, schema: name, url: schemaURL, stream: "bench:" + name}
	if p.pool, err = db.Open(ctx, p.url, 8); err != nil {
		return nil, err
	}
	if err := testenv.Migrate(ctx, p.pool); err != nil {
		return nil, err
	}
	if n > 0 {
		for done := 0; done < n; done += 200_000 {
			if err := db.GenerateJobs(ctx, p.pool, min(200_000, n-done)); err != nil {
				return nil, err
			}
		}
		if _, err := p.pool.Exec(ctx, "VACUUM ANALYZE jobs"); err != nil {
			return nil, err
		}
		// Every run starts just after a checkpoint, so none pays for one
		// that happens to fall in it (and all pay alike for the full page
		// images that follow one).
		if _, err := p.pool.Exec(ctx, "CHECKPOINT"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *pipeline) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p.pool.Close()
	_, _ = p.b.admin.Exec(ctx, "DROP SCHEMA "+p.schema+" CASCADE")
	_ = testenv.DeleteStream(ctx, p.b.rdb, p.stream)
}

// eachConn runs loop on every connection at once and says how long they
// took together, with the first error.
func eachConn(conns []*pgx.Conn, loop func(i int, conn *pgx.Conn) error) (time.Duration, error) {
	start := time.Now()
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() { errs[i] = loop(i, conn) })
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// env is the environment of the jobrelay processes of a run.
func (p *pipeline) env(extra ...string) []string {
	return testenv.ProcessEnv(p.url, p.b.o.redisURL, p.stream, extra...)
}

// proc is a jobrelay process whose peak memory is sampled.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	peak int64 // VmHWM, bytes
	mu   sync.Mutex
}

// start runs jobrelay with its output discarded: logging still costs what
// it costs, on a pipe nobody reads slowly.
func (p *pipeline) start(env []string, args ...string) (*proc, error) {
	cmd := exec.Command(p.b.binary, args...) //nolint:noctx // the process is stopped by signals (see stop), not by a context
	cmd.Env = env
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = devnull, devnull
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pr := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		_ = devnull.Close()
		pr.done <- err
	}()
	go pr.sample()
	return pr, nil
}

// startRelayAndConsumer runs `jobrelay relay` and `jobrelay consume` with
// env, until stop.
func (p *pipeline) startRelayAndConsumer(env []string) (stop func(), err error) {
	relayProc, err := p.start(env, "relay")
	if err != nil {
		return nil, err
	}
	consumerProc, err := p.start(env, "consume")
	if err != nil {
		_ = relayProc.stop()
		return nil, err
	}
	return func() { _ = consumerProc.stop(); _ = relayProc.stop() }, nil
}

// connect opens n connections to the pipeline's schema, which closeAll
// closes.
func (p *pipeline) connect(ctx context.Context, n int) (conns []*pgx.Conn, closeAll func(), err error) {
	closeAll = func() {
		for _, c := range conns {
			_ = c.Close(context.Background())
		}
	}
	for range n {
		c, err := pgx.Connect(ctx, p.url)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	return conns, closeAll, nil
}

// sample reads the process's peak RSS until it exits.
func (pr *proc) sample() {
	path := "/proc/" + strconv.Itoa(pr.cmd.Process.Pid) + "/status"
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				pr.mu.Lock()
				pr.peak = max(pr.peak, kb*1024)
				pr.mu.Unlock()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (pr *proc) peakRSS() int64 {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.peak
}

// wait waits for the process to exit successfully.
func (pr *proc) wait(ctx context.Context) error {
	select {
	case err := <-pr.done:
		return err
	case <-ctx.Done():
		_ = pr.cmd.Process.Kill()
		return ctx.Err()
	}
}

// stop ends a daemon with SIGTERM.
func (pr *proc) stop() error {
	_ = pr.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-pr.done:
		return err
	case <-time.After(time.Minute):
		_ = pr.cmd.Process.Kill()
		return errors.New("did not stop within a minute")
	}
}

// counts reads the number of jobs by status.
func (p *pipeline) counts(ctx context.Context) (map[string]int64, error) {
	return db.CountByStatus(ctx, p.pool)
}

// median of the values.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// machine describes where the run happened.
func (b *bench) machine(ctx context.Context) (string, error) {
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(info)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if info, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(info)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	var pgVersion, fsync, syncCommit, sharedBuffers string
	if err := b.admin.QueryRow(ctx, `SELECT split_part(version(), ' on ', 1), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('shared_buffers')`).Scan(&pgVersion, &fsync, &syncCommit, &sharedBuffers); err != nil {
		return "", err
	}
	info, err := b.rdb.InfoMap(ctx, "server", "persistence").Result()
	if err != nil {
		return "", err
	}
	redisVersion := info["Server"]["redis_version"]
	aof := info["Persistence"]["aof_enabled"]
	var sb strings.Builder
	fmt.Fprintf(&sb, "- machine: %s, %d cores, %s; %s %s\n", cpu, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&sb, "- PostgreSQL: %s, fsync %s, synchronous_commit %s, shared_buffers %s (loopback TCP)\n", pgVersion, fsync, syncCommit, sharedBuffers)
	fmt.Fprintf(&sb, "- Redis: %s, appendonly %s (loopback TCP)\n", redisVersion, map[string]string{"0": "no", "1": "yes"}[aof])
	fmt.Fprintf(&sb, "- Go: %s; jobrelay built with CGO_ENABLED=0\n", runtime.Version())
	fmt.Fprintf(&sb, "- date: %s; %d runs per throughput figure, %d jobs per run\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), b.o.runs, b.o.jobs)
	return sb.String(), nil
}
