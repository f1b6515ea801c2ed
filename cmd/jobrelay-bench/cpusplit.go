package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuSplit is who spent the CPU of one drain, in seconds: what explains a
// ratio to a limit is where the time of each job goes.
type cpuSplit struct {
	client   float64 // the jobrelay processes, or this program's loop for a limit
	postgres float64 // every postgres process, backends that exited included
	redis    float64 // the Redis server
	wall     float64
	jobs     int
	reads    indexReads // what the claims' index scans read
}

// perJob is a share of the split in µs per job.
func (c cpuSplit) perJob(seconds float64) float64 { return seconds / float64(c.jobs) * 1e6 }

// busy is the cores the three kept busy on average.
func (c cpuSplit) busy() float64 { return (c.client + c.postgres + c.redis) / c.wall }

// indexReads is what index scans on a schema's jobs table read: index
// entries, and the rows the entries led to (heap fetches). A claim that
// has to pass over rows it cannot take (locked by another transaction, or
// updated by one so recently that PostgreSQL cannot yet mark their entries
// dead) reads more of both per job claimed.
type indexReads struct{ entries, rows int64 }

// sub is the reads since start.
func (r indexReads) sub(start indexReads) indexReads {
	return indexReads{entries: r.entries - start.entries, rows: r.rows - start.rows}
}

// readIndexReads reads them from pg_stat_user_indexes. A backend sends
// its counts at most once a second, and when it exits, a moment after it
// has left pg_stat_activity: callers read once the run's connections have
// closed, and readIndexReads returns the first of two readings, 100 ms
// apart, that agree.
func (b *bench) readIndexReads(ctx context.Context, schema string) (indexReads, error) {
	read := func() (r indexReads, err error) {
		err = b.admin.QueryRow(ctx, `SELECT coalesce(sum(idx_tup_read), 0), coalesce(sum(idx_tup_fetch), 0)
FROM pg_stat_user_indexes WHERE schemaname = $1 AND relname = 'jobs'`, schema).Scan(&r.entries, &r.rows)
		return r, err
	}
	last, err := read()
	for range 50 {
		if err != nil {
			return indexReads{}, fmt.Errorf("read index statistics: %w", err)
		}
		select {
		case <-ctx.Done():
			return indexReads{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		var r indexReads
		if r, err = read(); err == nil && r == last {
			return r, nil
		}
		last = r
	}
	return indexReads{}, errors.New("read index statistics: still changing after 5s")
}

// cpuReading is the CPU seconds spent so far by this program, by
// PostgreSQL and by Redis.
type cpuReading struct{ self, postgres, redis float64 }

// readCPU reads them. A backend's time counts once it has exited too: the
// postmaster's children's times hold it once it is reaped (see
// waitBackendsGone).
func (b *bench) readCPU(ctx context.Context) (cpuReading, error) {
	var r cpuReading
	var err error
	if r.self, err = procCPU(os.Getpid()); err != nil {
		return r, err
	}
	if r.postgres, err = postgresCPU(); err != nil {
		return r, err
	}
	pid, err := b.redisPid(ctx)
	if err != nil {
		return r, err
	}
	if r.redis, err = procCPU(pid); err != nil {
		return r, fmt.Errorf("read Redis's CPU time (run the benchmark as the user Redis runs as, or root): %w", err)
	}
	return r, nil
}

// split is the CPU spent since start on jobs in wall, the client's
// being client seconds.
func (r cpuReading) split(start cpuReading, client float64, wall time.Duration, jobs int) cpuSplit {
	return cpuSplit{client: client, postgres: r.postgres - start.postgres, redis: r.redis - start.redis,
		wall: wall.Seconds(), jobs: jobs}
}

// redisPid is the local Redis server's process ID.
func (b *bench) redisPid(ctx context.Context) (int, error) {
	info, err := b.rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// postgresCPU is the CPU seconds of every postgres process: their own,
// and for each postmaster (a postgres process whose parent is not one)
// that of the children it has reaped.
func postgresCPU() (float64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	isPostgres := func(pid string) bool {
		comm, err := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		return err == nil && strings.TrimSpace(string(comm)) == "postgres"
	}
	var sum float64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || !isPostgres(e.Name()) {
			continue
		}
		f, err := statFields(e.Name())
		if err != nil {
			continue // exited meanwhile
		}
		own, err := ticks(f[11], f[12])
		if err != nil {
			return 0, err
		}
		sum += own
		if !isPostgres(f[1]) { // f[1] is the parent's pid
			children, err := ticks(f[13], f[14])
			if err != nil {
				return 0, err
			}
			sum += children
		}
	}
	return sum, nil
}

// statFields are the fields of /proc/<pid>/stat after the command's
// closing parenthesis: state is the first, ppid the 2nd, utime the 12th,
// stime the 13th, cutime and cstime (reaped children) the 14th and 15th.
func statFields(pid string) ([]string, error) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%s/stat: too few fields", pid)
	}
	return f, nil
}

// ticks is the sum of two clock tick counts, in seconds.
func ticks(a, b string) (float64, error) {
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("clock ticks %q %q are not numbers", a, b)
	}
	return (x + y) / clockTicks, nil
}
