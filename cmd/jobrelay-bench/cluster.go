package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/internal/stream"
)

// redisNodes are redis-server processes the benchmark starts for itself:
// one server, or the primaries of a cluster (no replicas: the figure is
// what the primaries spend on jobrelay's work). Their CPU time is read from
// /proc.
type redisNodes struct {
	dir   string
	cmds  []*exec.Cmd
	addrs []string
}

// startRedisNodes starts n servers, as cluster nodes if cluster is set,
// and joins them with redis-cli --cluster create. Each port is at most
// 55535, its cluster bus port (+10000) free too.
func startRedisNodes(ctx context.Context, n int, cluster bool) (*redisNodes, error) {
	dir, err := os.MkdirTemp("", "jobrelay-bench-redis-")
	if err != nil {
		return nil, err
	}
	rn := &redisNodes{dir: dir}
	for i := range n {
		port, err := nodePort(ctx)
		if err != nil {
			rn.stop()
			return nil, err
		}
		nodeDir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(nodeDir, 0o755); err != nil {
			rn.stop()
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", nodeDir, "--logfile", filepath.Join(nodeDir, "redis.log")}
		if cluster {
			args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		}
		cmd := exec.Command("redis-server", args...) //nolint:noctx // stopped by stop, not by a context
		if err := cmd.Start(); err != nil {
			rn.stop()
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		rn.cmds = append(rn.cmds, cmd)
		rn.addrs = append(rn.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	for _, addr := range rn.addrs {
		if err := waitPing(ctx, addr); err != nil {
			rn.stop()
			return nil, err
		}
	}
	if !cluster {
		return rn, nil
	}
	args := append(append([]string{"--cluster", "create"}, rn.addrs...), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		rn.stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rn.addrs[0]})
	defer rdb.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return rn, nil
		}
		if time.Now().After(deadline) {
			rn.stop()
			return nil, errors.New("the benchmark's cluster did not become ok")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// url is a REDIS_URL naming every node.
func (rn *redisNodes) url() string {
	var b strings.Builder
	b.WriteString("redis://" + rn.addrs[0])
	for i, a := range rn.addrs[1:] {
		if i == 0 {
			b.WriteString("?addr=" + a)
		} else {
			b.WriteString("&addr=" + a)
		}
	}
	return b.String()
}

// cpu returns the CPU time (user + system) each node has used so far.
func (rn *redisNodes) cpu() ([]time.Duration, error) {
	out := make([]time.Duration, len(rn.cmds))
	for i, cmd := range rn.cmds {
		seconds, err := procCPU(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		out[i] = time.Duration(seconds * float64(time.Second))
	}
	return out, nil
}

func (rn *redisNodes) stop() {
	for _, cmd := range rn.cmds {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	_ = os.RemoveAll(rn.dir)
}

// nodePort finds a free port at most 55535 whose port + 10000 is free too.
func nodePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	for range 1000 {
		p := 20000 + rand.IntN(35535)
		a, err := lc.Listen(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := lc.Listen(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p, nil
	}
	return 0, errors.New("no free port pair for a Redis node")
}

func waitPing(ctx context.Context, addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not start", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// scaleResult is one run of the scale-out scenario.
type scaleResult struct {
	rate        float64       // jobs/s, relayed and reviewed
	cpuPerJob   time.Duration // Redis CPU time per job, all nodes
	busiestJob  time.Duration // the busiest node's CPU time per job
	nodesLoaded int           // nodes that did a tenth of the work or more
	placement   string        // partitions per node, "2/2/2"
}

// benchStream is the stream of the scale-out runs: the default name.
const benchStream = "job_review"

// flush empties every node.
func (rn *redisNodes) flush(ctx context.Context) error {
	for _, addr := range rn.addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		err := rdb.FlushAll(ctx).Err()
		_ = rdb.Close()
		if err != nil {
			return fmt.Errorf("flush the benchmark's redis-server %s: %w", addr, err)
		}
	}
	return nil
}

// placement counts the streams each node serves, "2/2/2".
func (rn *redisNodes) placement(ctx context.Context, streams []string) (string, error) {
	if len(rn.addrs) == 1 {
		return strconv.Itoa(len(streams)), nil
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rn.addrs})
	defer rdb.Close()
	per := map[string]int{}
	for _, s := range streams {
		node, err := rdb.MasterForKey(ctx, s)
		if err != nil {
			return "", fmt.Errorf("find the primary of %s: %w", s, err)
		}
		per[node.Options().Addr]++
	}
	counts := make([]string, len(rn.addrs))
	for i, a := range rn.addrs {
		counts[i] = strconv.Itoa(per[a])
	}
	return strings.Join(counts, "/"), nil
}

// scaleOut runs 3 relays and 2 consumers (no-op handler) over the jobs on
// rn with the given partitions, from their start until every job is
// reviewed, and reads the Redis CPU time it cost.
func (b *bench) scaleOut(ctx context.Context, rn *redisNodes, partitions, jobs int) (scaleResult, error) {
	var res scaleResult
	p, err := b.newPipeline(ctx, jobs)
	if err != nil {
		return res, err
	}
	defer p.pool.Close()
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = b.admin.Exec(dctx, "DROP SCHEMA "+p.schema+" CASCADE")
	}()
	// The servers are the benchmark's own: each run starts them empty, and
	// names the stream job_review, so that the partitions sit where they
	// would in a deployment with the default name.
	if err := rn.flush(ctx); err != nil {
		return res, err
	}
	if res.placement, err = rn.placement(ctx, stream.Partitions(benchStream, partitions)); err != nil {
		return res, err
	}
	env := append(p.env("LOG_LEVEL=warn", "HANDLER=log", "CONCURRENCY=64", "MAX_STREAM_LAG=0",
		"STREAM_PARTITIONS="+strconv.Itoa(partitions)), "REDIS_URL="+rn.url(), "JOB_REVIEW_QUEUE_NAME="+benchStream)
	before, err := rn.cpu()
	if err != nil {
		return res, err
	}
	start := time.Now()
	var procs []*proc
	defer func() {
		for _, pr := range procs {
			_ = pr.stop()
		}
	}()
	for _, cmd := range []string{"relay", "relay", "relay", "consume", "consume"} {
		pr, err := p.start(env, cmd)
		if err != nil {
			return res, err
		}
		procs = append(procs, pr)
	}
	err = waitFor(ctx, 10*time.Minute, func() bool {
		time.Sleep(100 * time.Millisecond)
		var n int64
		return p.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'reviewed'`).Scan(&n) == nil && n == int64(jobs)
	})
	elapsed := time.Since(start)
	if err != nil {
		return res, fmt.Errorf("%d partitions: %w", partitions, err)
	}
	after, err := rn.cpu()
	if err != nil {
		return res, err
	}
	var total, busiest time.Duration
	deltas := make([]time.Duration, len(after))
	for i := range after {
		deltas[i] = after[i] - before[i]
		total += deltas[i]
		busiest = max(busiest, deltas[i])
	}
	for _, d := range deltas {
		if d*10 >= total {
			res.nodesLoaded++
		}
	}
	res.rate = float64(jobs) / elapsed.Seconds()
	res.cpuPerJob = total / time.Duration(jobs)
	res.busiestJob = busiest / time.Duration(jobs)
	return res, nil
}
