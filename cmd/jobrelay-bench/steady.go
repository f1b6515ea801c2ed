package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// steadyInserters is how many connections insert the steady-rate jobs.
const steadyInserters = 8 // the pipeline pool's size

// steadyCost is what one steady-rate run cost, per 1,000 jobs, in CPU
// seconds, and its commit → handler latency percentiles in milliseconds.
type steadyCost struct {
	jobrelay, pgBackends, pgAll, redis float64
	p50, p99                           float64
	rate                               float64 // inserts per second achieved
}

// steady inserts jobs one per transaction at a steady rate into a pipeline
// of one relay and two consumers at their defaults (handler: HTTP, to a
// server of the benchmark's, which notes when each job arrives) and
// measures the CPU each part spends: the jobrelay processes, the
// PostgreSQL backends serving them (by application_name), every
// PostgreSQL process (server-wide, so shared with whatever else runs), and
// a Redis server of the run's own. All from /proc.
func (b *bench) steady(ctx context.Context) (steadyCost, error) {
	var res steadyCost
	rs, err := startRedis(ctx)
	if err != nil {
		return res, err
	}
	defer rs.stop()

	p, err := b.newPipeline(ctx, 0)
	if err != nil {
		return res, err
	}
	defer p.drop()
	appName := "jobrelay-steady-" + p.schema
	procURL, err := withParam(p.url, "application_name", appName)
	if err != nil {
		return res, err
	}

	var mu sync.Mutex
	committed := map[string]time.Time{}
	review, err := startReviewService(ctx, 0, nil)
	if err != nil {
		return res, err
	}
	defer review.close()

	env := p.env("LOG_LEVEL=warn", review.handler(), "DATABASE_URL="+procURL, "REDIS_URL="+rs.url())
	var procs []*proc
	defer func() {
		for _, pr := range procs {
			_ = pr.stop()
		}
	}()
	for _, args := range [][]string{{"relay"}, {"consume"}, {"consume"}} {
		pr, err := p.start(env, args...)
		if err != nil {
			return res, err
		}
		procs = append(procs, pr)
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		groups, err := rs.rdb.XInfoGroups(ctx, p.stream).Result()
		return err == nil && len(groups) == 1
	}); err != nil {
		return res, fmt.Errorf("pipeline did not start: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // the relay's first cycle and LISTEN

	before, err := b.cpu(ctx, procs, appName, rs.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	// Inserts are paced from the start: the i-th is due at start + i/rate.
	// Inserters share them, so that slow commits (each waits for its
	// fsync) do not hold the next back; the rate achieved is reported.
	total := int(b.o.steadyFor.Seconds() * float64(b.o.steadyRate))
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, steadyInserters)
	for range steadyInserters {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(b.o.steadyRate))))
				id, err := db.InsertJob(ctx, p.pool, db.NewJob{Site: "otta", Title: "Steady", Company: "Acme", JobURL: "https://x"})
				if err != nil {
					errs <- err
					return
				}
				now := time.Now()
				mu.Lock()
				committed[id] = now
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.rate = float64(total) / time.Since(start).Seconds()
	close(errs)
	if err := errors.Join(<-errs); err != nil {
		return res, err
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return review.count() >= len(committed)
	}); err != nil {
		return res, fmt.Errorf("not every job arrived: %w", err)
	}
	// Their results recorded: every job reviewed.
	if err := waitFor(ctx, 30*time.Second, func() bool {
		c, err := p.counts(ctx)
		return err == nil && c[db.StatusReviewed] == int64(total)
	}); err != nil {
		return res, fmt.Errorf("not every job was recorded reviewed: %w", err)
	}
	after, err := b.cpu(ctx, procs, appName, rs.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	per := float64(total) / 1000
	res.jobrelay = (after.jobrelay - before.jobrelay) / per
	res.pgBackends = (after.pgBackends - before.pgBackends) / per
	res.pgAll = (after.pgAll - before.pgAll) / per
	res.redis = (after.redis - before.redis) / per

	mu.Lock()
	defer mu.Unlock()
	pc := percentiles(review.since(committed))
	res.p50, res.p99 = pc[0], pc[1]
	return res, nil
}

// cpuTimes are CPU seconds used so far.
type cpuTimes struct{ jobrelay, pgBackends, pgAll, redis float64 }

// cpu reads the CPU seconds of the jobrelay processes, of the PostgreSQL
// backends whose application_name is appName (pids from
// pg_stat_activity), of every postgres process, and of the Redis server.
// A backend that exits between two readings takes its time with it; the
// jobrelay processes keep their connections for the whole run.
func (b *bench) cpu(ctx context.Context, procs []*proc, appName string, redisPid int) (cpuTimes, error) {
	var t cpuTimes
	for _, pr := range procs {
		s, err := procCPU(pr.cmd.Process.Pid)
		if err != nil {
			return t, err
		}
		t.jobrelay += s
	}
	rows, err := b.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, appName)
	if err != nil {
		return t, err
	}
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return t, err
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		return t, err
	}
	for _, pid := range pids {
		s, _ := procCPU(pid) // the server's processes: readable as root, as the benchmark runs
		t.pgBackends += s
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return t, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		s, _ := procCPU(pid)
		t.pgAll += s
	}
	if t.redis, err = procCPU(redisPid); err != nil {
		return t, err
	}
	return t, nil
}

// procCPU is the user and system CPU seconds of a process.
func procCPU(pid int) (float64, error) {
	f, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return 0, err
	}
	t, err := ticks(f[11], f[12])
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return t, nil
}

// withParam sets a query parameter of a URL.
func withParam(raw, key, value string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redisServer is a Redis server of the benchmark's own, so that its CPU
// time is the run's alone.
type redisServer struct {
	cmd  *exec.Cmd
	port int
	dir  string
	rdb  *redis.Client
}

func (s *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0" }

// startRedis starts redis-server on a free port, as the tests' throwaway
// servers: no persistence.
func startRedis(ctx context.Context) (*redisServer, error) { return startRedisUnder(ctx) }

// startRedisUnder is startRedis with the server run by the command wrapper
// names (valgrind, say), if any.
func startRedisUnder(ctx context.Context, wrapper ...string) (*redisServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	_ = ln.Close()
	if !ok {
		return nil, fmt.Errorf("free port: unexpected address %s", ln.Addr())
	}
	port := addr.Port
	dir, err := os.MkdirTemp("", "jobrelay-bench-redis-")
	if err != nil {
		return nil, err
	}
	args := slices.Concat(wrapper, []string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log")})
	cmd := exec.Command(args[0], args[1:]...) //nolint:noctx // stopped by stop, not by a context
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &redisServer{cmd: cmd, port: port, dir: dir}
	s.rdb = redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), ContextTimeoutEnabled: true})
	// A plain dial until the port listens (a server under valgrind takes
	// seconds): go-redis would log every refused dial.
	var d net.Dialer
	listening := func() bool {
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}
	if err := waitFor(ctx, 60*time.Second, func() bool { return listening() && s.rdb.Ping(ctx).Err() == nil }); err != nil {
		s.stop()
		return nil, fmt.Errorf("redis-server on port %d did not start: %w", port, err)
	}
	return s, nil
}

// stop shuts the server down cleanly with SIGTERM (a wrapper such as
// callgrind then writes its output), or kills it if it does not exit
// within 10 s.
func (s *redisServer) stop() {
	_ = s.rdb.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-exited
	}
	_ = os.RemoveAll(s.dir)
}

// steadyTable runs the steady-rate runs, if asked for, and returns their
// table: the medians of the runs.
func (b *bench) steadyTable(ctx context.Context) (string, error) {
	if !b.runs("steady") {
		return "", nil
	}
	var runs []steadyCost
	for i := range b.o.runs {
		c, err := b.steady(ctx)
		if err != nil {
			return "", fmt.Errorf("steady rate: %w", err)
		}
		b.logf("steady run %d: %.0f inserts/s; CPU s per 1,000 jobs: jobrelay %.3f, PostgreSQL backends %.3f (all %.3f), Redis %.3f; commit → handler p50 %.2f p99 %.2f ms",
			i+1, c.rate, c.jobrelay, c.pgBackends, c.pgAll, c.redis, c.p50, c.p99)
		runs = append(runs, c)
	}
	med := func(pick func(steadyCost) float64) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, pick(r))
		}
		return median(v)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| steady %s inserts/s for %s: one relay, two consumers, defaults (HTTP handler) | measured |\n| --- | ---: |\n",
		thousands(float64(b.o.steadyRate)), b.o.steadyFor)
	fmt.Fprintf(&sb, "| inserts per second achieved (median) | %s |\n", thousands(med(func(c steadyCost) float64 { return c.rate })))
	fmt.Fprintf(&sb, "| CPU seconds per 1,000 jobs: jobrelay processes (relay + 2 consumers) | %.3f |\n", med(func(c steadyCost) float64 { return c.jobrelay }))
	fmt.Fprintf(&sb, "| CPU seconds per 1,000 jobs: PostgreSQL backends serving them | %.3f |\n", med(func(c steadyCost) float64 { return c.pgBackends }))
	fmt.Fprintf(&sb, "| CPU seconds per 1,000 jobs: PostgreSQL, every process (server-wide: the inserts, background writers, and whatever else runs) | %.3f |\n", med(func(c steadyCost) float64 { return c.pgAll }))
	fmt.Fprintf(&sb, "| CPU seconds per 1,000 jobs: Redis (a server of the run's own) | %.3f |\n", med(func(c steadyCost) float64 { return c.redis }))
	fmt.Fprintf(&sb, "| INSERT commit → handler start, p50 / p99 | %.2f ms / %.2f ms |\n",
		med(func(c steadyCost) float64 { return c.p50 }), med(func(c steadyCost) float64 { return c.p99 }))
	return sb.String(), nil
}
