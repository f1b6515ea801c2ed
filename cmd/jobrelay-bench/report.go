package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jobrelay/jobrelay/consumer"
)

// measurement is a throughput scenario, run once per round.
type measurement struct {
	name string
	f    func() (float64, int64, error)
	vals []float64
	peak int64      // largest peak RSS of its processes, bytes
	cpu  []cpuSplit // who spent the CPU of each run, where measured
}

func (m *measurement) median() float64 { return median(m.vals) }

// ran says whether the measurement was run (see -only): the report leaves
// out the rows of those that were not, and every ratio or target that
// needs one.
func (m *measurement) ran() bool { return len(m.vals) > 0 }

// cpuMedian is the median over the runs of f of who spent the CPU.
func (m *measurement) cpuMedian(f func(cpuSplit) float64) float64 {
	v := make([]float64, len(m.cpu))
	for i, c := range m.cpu {
		v[i] = f(c)
	}
	return median(v)
}

// rounds runs every measurement once per round, b.o.runs rounds: a slow
// spell of the machine then touches every scenario alike, which keeps the
// ratios between them honest.
func (b *bench) rounds(ms []*measurement) error {
	for round := range b.o.runs {
		for _, m := range ms {
			v, rss, err := m.f()
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			b.logf("round %d: %-58s %8.0f jobs/s", round+1, m.name, v)
			m.vals = append(m.vals, v)
			m.peak = max(m.peak, rss)
		}
	}
	return nil
}

func noRSS(f func() (float64, error)) func() (float64, int64, error) {
	return func() (float64, int64, error) { v, err := f(); return v, 0, err }
}

// runs says whether a part of the benchmark was asked for.
func (b *bench) runs(part string) bool { return b.o.only == nil || b.o.only[part] }

func (b *bench) all(ctx context.Context) (string, error) {
	machine, err := b.machine(ctx)
	if err != nil {
		return "", err
	}
	var ms []*measurement
	add := func(part, name string, f func() (float64, int64, error)) *measurement {
		m := &measurement{name: name, f: f}
		if b.runs(part) {
			ms = append(ms, m)
		}
		return m
	}
	// addSplit adds a measurement that also says who spent the CPU.
	addSplit := func(part, name string, f func() (float64, int64, cpuSplit, error)) *measurement {
		var m *measurement
		m = add(part, name, func() (float64, int64, error) {
			v, rss, split, err := f()
			m.cpu = append(m.cpu, split)
			return v, rss, err
		})
		return m
	}
	limit := func(f func() (float64, cpuSplit, error)) func() (float64, int64, cpuSplit, error) {
		return func() (float64, int64, cpuSplit, error) { v, split, err := f(); return v, 0, split, err }
	}
	type pgKey struct{ batch, conns int }
	pg := map[pgKey]*measurement{}
	for _, batch := range []int{100, 1000} {
		for conns := 1; conns <= 3; conns++ {
			pg[pgKey{batch, conns}] = addSplit("relay", fmt.Sprintf("PostgreSQL limit, batch %d, %d connection(s)", batch, conns),
				limit(func() (float64, cpuSplit, error) { return b.pgLimit(ctx, batch, conns) }))
		}
	}
	pgPipelined := map[int]*measurement{}
	for _, conns := range []int{1, 2} {
		pgPipelined[conns] = addSplit("relay", fmt.Sprintf("PostgreSQL limit, pipelined, batch 100, %d connection(s)", conns),
			limit(func() (float64, cpuSplit, error) { return b.pgPipelinedLimit(ctx, 100, conns) }))
	}
	redisLimit := map[int]*measurement{}
	for _, batch := range []int{100, 1000} {
		redisLimit[batch] = addSplit("limits", fmt.Sprintf("Redis limit, pipelined XADD, batch %d", batch),
			limit(func() (float64, cpuSplit, error) { return b.redisLimit(ctx, batch) }))
	}
	type relayKey struct{ batch, replicas, workers int }
	relayKeys := []relayKey{{100, 1, 1}, {100, 1, 2}, {100, 3, 1}, {100, 3, 2}, {1000, 1, 2}, {1000, 3, 2}}
	relays := map[relayKey]*measurement{}
	for _, k := range relayKeys {
		relays[k] = addSplit("relay", fmt.Sprintf("relay --once, batch %d, %d replica(s) × %d worker(s)", k.batch, k.replicas, k.workers),
			func() (float64, int64, cpuSplit, error) {
				r, err := b.relayDrain(ctx, k.batch, k.replicas, k.workers, b.o.jobs, nil)
				return r.rate, r.peak, r.cpu, err
			})
	}
	poller := add("poller", "old poller's pattern", noRSS(func() (float64, error) { return b.oldPoller(ctx) }))
	type consKey struct{ n, concurrency int }
	consKeys := []consKey{{1, consumer.ConcurrencyDefault}, {2, consumer.ConcurrencyDefault}, {1, 64}, {2, 64}}
	cons := map[consKey]*measurement{}
	for _, k := range consKeys {
		cons[k] = add("consumers", fmt.Sprintf("consume ×%d, CONCURRENCY %d", k.n, k.concurrency),
			func() (float64, int64, error) { return b.consumers(ctx, k.n, k.concurrency) })
	}
	consLimit := map[int]*measurement{}
	for _, conns := range []int{1, 2} {
		consLimit[conns] = add("consumers", fmt.Sprintf("consumer limit, batch %d, %d connection(s)", consumerLimitBatch, conns),
			noRSS(func() (float64, error) { return b.consumerLimit(ctx, conns) }))
	}
	peers := b.addPeers(ctx, add)
	hot := b.addHot(ctx, add)
	if err := b.rounds(ms); err != nil {
		return "", err
	}
	consumerRSS := int64(0)
	for _, m := range cons {
		consumerRSS = max(consumerRSS, m.peak)
	}

	var lats []latencies
	for i := range b.o.runs {
		if !b.runs("latency") {
			break
		}
		l, err := b.latency(ctx)
		if err != nil {
			return "", fmt.Errorf("latency: %w", err)
		}
		b.logf("latency run %d: to entry p50 %.2f p99 %.2f max %.2f ms; to handler p50 %.2f p99 %.2f max %.2f ms",
			i+1, l.toEntry[0], l.toEntry[1], l.toEntry[2], l.toHandler[0], l.toHandler[1], l.toHandler[2])
		lats = append(lats, l)
	}
	med := func(pick func(latencies) float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		var v []float64
		for _, l := range lats {
			v = append(v, pick(l))
		}
		return median(v)
	}
	steady, err := b.steadyTable(ctx)
	if err != nil {
		return "", err
	}
	var backlogRate float64
	var backlogRSS int64
	if b.runs("memory") {
		b.logf("relay draining a backlog of %d jobs (memory)", b.o.backlog)
		if backlogRate, backlogRSS, err = b.relayRun(ctx, 100, 1, 2, b.o.backlog); err != nil {
			return "", fmt.Errorf("backlog: %w", err)
		}
	}
	idleQueries, idleCommands := -1, -1
	if b.runs("idle") {
		b.logf("idle relay")
		if idleQueries, idleCommands, err = b.idleRelay(ctx, 10*time.Second); err != nil {
			return "", fmt.Errorf("idle relay: %w", err)
		}
	}

	var tables []*tableRun
	for _, n := range b.o.tableSizes {
		if !b.runs("table") {
			break
		}
		t, err := b.tableSize(ctx, n)
		if err != nil {
			return "", fmt.Errorf("table of %d reviewed jobs: %w", n, err)
		}
		tables = append(tables, t)
	}

	var scale []scaleRow
	if b.runs("cluster") {
		if scale, err = b.scaleOutAll(ctx); err != nil {
			return "", fmt.Errorf("scale-out: %w", err)
		}
	}

	fairness := ""
	if b.runs("fairness") || b.runs("overtaking") {
		if fairness, err = b.fairnessReport(ctx); err != nil {
			return "", fmt.Errorf("fairness: %w", err)
		}
	}

	redisCost, err := b.redisCost(ctx)
	if err != nil {
		return "", err
	}

	var sb strings.Builder
	sb.WriteString(machine)
	throughput := len(ms) > 0
	if throughput {
		sb.WriteString("\n| scenario | jobs/s | ratio | target |\n| --- | ---: | ---: | --- |\n")
	}
	row := func(name string, v float64, ratio string, target string) {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", name, thousands(v), ratio, target)
	}
	for _, batch := range []int{100, 1000} {
		for conns := 1; conns <= 3; conns++ {
			if m := pg[pgKey{batch, conns}]; m.ran() {
				row(fmt.Sprintf("PostgreSQL limit: claim + update + commit, batch %d, %d connection(s)", batch, conns),
					m.median(), "1.00", "")
			}
		}
	}
	for _, conns := range []int{1, 2} {
		if m := pgPipelined[conns]; m.ran() {
			row(fmt.Sprintf("PostgreSQL limit, pipelined: each COMMIT carries the next claim, batch 100, %d connection(s)", conns),
				m.median(), fmt.Sprintf("%.2f", m.median()/pg[pgKey{100, conns}].median()), "")
		}
	}
	for _, batch := range []int{100, 1000} {
		if m := redisLimit[batch]; m.ran() {
			row(fmt.Sprintf("Redis limit: pipelined XADD, batch %d", batch), m.median(), "", "")
		}
	}
	// A relay that claims, publishes and commits in turn on one connection
	// can at best take as long per job as both limits together,
	// PostgreSQL's with the round trips the relay makes; one worker's
	// claims ahead overlap the two, and pass it.
	serial := 0.0
	if pg1, pp1, r := pg[pgKey{100, 1}], pgPipelined[1], redisLimit[100]; pg1.ran() && pp1.ran() && r.ran() {
		serial = 1 / (1/pp1.median() + 1/r.median())
		row("serial ceiling, batch 100, 1 connection: the pipelined PostgreSQL limit and the Redis limit in turn", serial,
			fmt.Sprintf("%.2f", serial/pg1.median()), "")
	}
	// Two workers share the machine's cores with PostgreSQL and Redis: at
	// best they cost the cores what the 2-connection limit does, plus
	// what Redis spends on a plain XADD per job, and keep them as busy.
	cpuCeiling := 0.0
	if pg2, r := pg[pgKey{100, 2}], redisLimit[100]; pg2.ran() && r.ran() && len(pg2.cpu) > 0 && len(r.cpu) > 0 {
		all := pg2.cpuMedian(func(c cpuSplit) float64 { return c.perJob(c.client + c.postgres + c.redis) })
		xadd := r.cpuMedian(func(c cpuSplit) float64 { return c.perJob(c.redis) })
		cpuCeiling = pg2.median() * all / (all + xadd)
		row(fmt.Sprintf("CPU ceiling, batch 100, 2 connections: the PostgreSQL limit's %.1f µs of CPU per job and the Redis limit's %.1f µs of Redis, on the cores the limit kept busy", all, xadd),
			cpuCeiling, fmt.Sprintf("%.2f of 2 connections", cpuCeiling/pg2.median()), "")
	}
	relay := func(k relayKey) float64 { return relays[k].median() }
	for _, k := range relayKeys {
		if !relays[k].ran() {
			continue
		}
		v := relay(k)
		limit := pg[pgKey{k.batch, k.replicas}].median()
		ratio := fmt.Sprintf("%.2f", v/limit)
		if k == (relayKey{100, 1, 1}) && serial > 0 {
			ratio += fmt.Sprintf(" (%.2f of the serial ceiling)", v/serial)
		}
		if conns := min(k.replicas*k.workers, 3); conns != k.replicas {
			ratio += fmt.Sprintf(" (%.2f of %d connections)", v/pg[pgKey{k.batch, conns}].median(), conns)
		}
		if k == (relayKey{100, 1, 2}) && cpuCeiling > 0 {
			ratio += fmt.Sprintf(" (%.2f of the CPU ceiling)", v/cpuCeiling)
		}
		target := ""
		switch k {
		case relayKey{100, 1, 1}:
			target = check(v/limit >= 0.8, "≥ 0.80 × PostgreSQL limit at 1 connection")
		case relayKey{100, 1, 2}:
			target = check(v/pg[pgKey{100, 2}].median() >= 0.8, "≥ 0.80 × PostgreSQL limit at 2 connections")
		case relayKey{100, 3, 2}:
			target = check(v/limit >= 0.65 && v > relay(relayKey{100, 1, 2}), "≥ 0.65 × limit, faster than one relay")
		case relayKey{100, 3, 1}:
			target = check(v/limit >= 0.65 && v > relay(relayKey{100, 1, 1}), "≥ 0.65 × limit, faster than one relay of one worker")
		}
		workers := fmt.Sprintf("RELAY_WORKERS=%d", k.workers)
		if k.workers == 2 {
			workers += " (default)"
		}
		row(fmt.Sprintf("jobrelay relay, batch %d, %d replica(s), %s", k.batch, k.replicas, workers), v, ratio, target)
	}
	if poller.ran() {
		ratio, target := "", ""
		if relays[relayKey{100, 1, 2}].ran() {
			ratio = fmt.Sprintf("relay %.0f×", relay(relayKey{100, 1, 2})/poller.median())
			target = check(relay(relayKey{100, 1, 2}) >= 10*poller.median(), "relay ≥ 10×")
		}
		row("the old poller's pattern (per job: XADD, UPDATE, COMMIT)", poller.median(), ratio, target)
	}
	for _, conns := range []int{1, 2} {
		if consLimit[conns].ran() {
			row(fmt.Sprintf("consumer limit: XREADGROUP + UPDATE + XACK, batch %d, %d connection(s)", consumerLimitBatch, conns),
				consLimit[conns].median(), fmt.Sprintf("%.2f of 2 connections", consLimit[conns].median()/consLimit[2].median()), "")
		}
	}
	for _, k := range consKeys {
		if !cons[k].ran() {
			continue
		}
		v := cons[k].median()
		target := ""
		if k == (consKey{2, consumer.ConcurrencyDefault}) {
			target = check(v >= 0.8*consLimit[2].median(), "≥ 0.80 × consumer limit at 2 connections, defaults")
		}
		concurrency := fmt.Sprintf("CONCURRENCY %d", k.concurrency)
		if k.concurrency == consumer.ConcurrencyDefault {
			concurrency += " (default)"
		}
		row(fmt.Sprintf("jobrelay consume ×%d, %s, no-op handler, update + XACK", k.n, concurrency), v,
			fmt.Sprintf("%.2f", v/consLimit[2].median()), target)
	}
	peerRows(peers, row, relay(relayKey{100, 1, 2}), cons[consKey{2, consumer.ConcurrencyDefault}].median())
	sb.WriteString(cpuTable([]cpuRow{
		{"PostgreSQL limit, 1 connection (client: the limit's loop)", pg[pgKey{100, 1}]},
		{"PostgreSQL limit, pipelined, 1 connection", pgPipelined[1]},
		{"jobrelay relay, RELAY_WORKERS=1 (client: the relay)", relays[relayKey{100, 1, 1}]},
		{"Redis limit, pipelined XADD (client: the limit's loop)", redisLimit[100]},
		{"PostgreSQL limit, 2 connections", pg[pgKey{100, 2}]},
		{"PostgreSQL limit, pipelined, 2 connections", pgPipelined[2]},
		{"jobrelay relay, RELAY_WORKERS=2 (default)", relays[relayKey{100, 1, 2}]},
	}))
	if len(lats) > 0 {
		fmt.Fprintf(&sb, "\n| latency at %d inserts/s, default POLL_INTERVAL | p50 | p99 | max | target |\n| --- | ---: | ---: | ---: | --- |\n", b.o.rate)
		fmt.Fprintf(&sb, "| INSERT commit → entry in the stream | %.2f ms | %.2f ms | %.2f ms | %s |\n",
			med(func(l latencies) float64 { return l.toEntry[0] }), med(func(l latencies) float64 { return l.toEntry[1] }),
			med(func(l latencies) float64 { return l.toEntry[2] }), check(med(func(l latencies) float64 { return l.toEntry[1] }) <= 2, "p99 ≤ 2 ms"))
		fmt.Fprintf(&sb, "| INSERT commit → handler start | %.2f ms | %.2f ms | %.2f ms | %s |\n",
			med(func(l latencies) float64 { return l.toHandler[0] }), med(func(l latencies) float64 { return l.toHandler[1] }),
			med(func(l latencies) float64 { return l.toHandler[2] }), check(med(func(l latencies) float64 { return l.toHandler[1] }) <= 5, "p99 ≤ 5 ms"))
	}

	sb.WriteString(redisCost)
	sb.WriteString(steady)
	sb.WriteString(hotTable(hot))
	relayRSS := relays[relayKey{100, 1, 2}].peak
	var mem strings.Builder
	if b.runs("memory") {
		fmt.Fprintf(&mem, "| relay peak RSS draining %s pending jobs (at %s jobs/s) | %.1f MB | %s |\n", thousands(float64(b.o.backlog)),
			thousands(backlogRate), mb(backlogRSS), check(mb(backlogRSS) <= 50, "≤ 50 MB"))
	}
	if relayRSS > 0 {
		target := ""
		if b.runs("memory") {
			target = check(float64(backlogRSS) <= 1.25*float64(relayRSS), "flat in the backlog size")
		}
		fmt.Fprintf(&mem, "| relay peak RSS draining %s pending jobs | %.1f MB | %s |\n", thousands(float64(b.o.jobs)), mb(relayRSS), target)
	}
	if consumerRSS > 0 {
		fmt.Fprintf(&mem, "| consumer peak RSS (largest of the consumer runs) | %.1f MB | |\n", mb(consumerRSS))
	}
	if b.runs("idle") {
		fmt.Fprintf(&mem, "| idle relay over 10 s: database statements, Redis commands | %d, %d | %s |\n", idleQueries, idleCommands,
			check(idleQueries == 0 && idleCommands == 0, "none beyond its poll and LISTEN"))
	}
	if mem.Len() > 0 {
		sb.WriteString("\n| memory and idleness | measured | target |\n| --- | ---: | --- |\n")
		sb.WriteString(mem.String())
	}
	sb.WriteString(tableReport(tables))
	if len(scale) > 0 {
		writeScale(&sb, scale, b.o.clusterJobs)
	}
	sb.WriteString(fairness)
	return sb.String(), nil
}

func check(ok bool, what string) string {
	if ok {
		return "met: " + what
	}
	return "**missed**: " + what
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// thousands formats 123456.7 as "123,457".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// scaleRow is the median of the runs of one scale-out setup.
type scaleRow struct {
	name       string
	partitions int
	rate       float64
	cpuPerJob  time.Duration
	busiest    time.Duration
	loaded     int
	nodes      int
	placement  string
}

// scaleOutAll runs the scale-out scenario on one redis-server and on a
// 3-primary cluster with 1, 3 and 6 partitions, b.o.runs rounds.
func (b *bench) scaleOutAll(ctx context.Context) ([]scaleRow, error) {
	single, err := startRedisNodes(ctx, 1, false)
	if err != nil {
		return nil, err
	}
	defer single.stop()
	cluster, err := startRedisNodes(ctx, 3, true)
	if err != nil {
		return nil, err
	}
	defer cluster.stop()
	setups := []struct {
		name       string
		nodes      *redisNodes
		partitions int
	}{
		{"one redis-server", single, 1},
		{"cluster, 3 primaries", cluster, 1},
		{"cluster, 3 primaries", cluster, 3},
		{"cluster, 3 primaries", cluster, 6},
	}
	runs := make([][]scaleResult, len(setups))
	for round := range b.o.runs {
		for i, s := range setups {
			r, err := b.scaleOut(ctx, s.nodes, s.partitions, b.o.clusterJobs)
			if err != nil {
				return nil, fmt.Errorf("%s, %d partitions: %w", s.name, s.partitions, err)
			}
			b.logf("round %d: scale-out, %s, %d partition(s): %8.0f jobs/s, Redis CPU %s/job (busiest node %s)",
				round+1, s.name, s.partitions, r.rate, r.cpuPerJob, r.busiestJob)
			runs[i] = append(runs[i], r)
		}
	}
	rows := make([]scaleRow, len(setups))
	for i, s := range setups {
		var rate, cpu, busiest []float64
		loaded, placement := 0, ""
		for _, r := range runs[i] {
			placement = r.placement
			rate = append(rate, r.rate)
			cpu = append(cpu, float64(r.cpuPerJob))
			busiest = append(busiest, float64(r.busiestJob))
			loaded = max(loaded, r.nodesLoaded)
		}
		rows[i] = scaleRow{name: s.name, partitions: s.partitions, rate: median(rate), cpuPerJob: time.Duration(median(cpu)),
			busiest: time.Duration(median(busiest)), loaded: loaded, nodes: len(s.nodes.addrs), placement: placement}
	}
	return rows, nil
}

func writeScale(sb *strings.Builder, rows []scaleRow, jobs int) {
	fmt.Fprintf(sb, "\n| scaling out: 3 relays + 2 consumers, %s jobs, relayed and reviewed | partitions | per node | jobs/s | Redis CPU per job, all nodes | busiest node's CPU per job | nodes doing ≥ 10%% | Redis-bound jobs/s, a core per node |\n",
		thousands(float64(jobs)))
	sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		bound := 0.0
		if r.busiest > 0 {
			bound = float64(time.Second) / float64(r.busiest)
		}
		fmt.Fprintf(sb, "| %s | %d | %s | %s | %.1f µs | %.1f µs | %d of %d | %s |\n", r.name, r.partitions, r.placement, thousands(r.rate),
			float64(r.cpuPerJob)/float64(time.Microsecond), float64(r.busiest)/float64(time.Microsecond), r.loaded, r.nodes, thousands(bound))
	}
}

// cpuRow is a row of cpuTable.
type cpuRow struct {
	name string
	m    *measurement
}

// cpuTable says where the CPU of each job went in the runs of rows, as
// medians of the runs: what a ratio to a limit is made of.
func cpuTable(rows []cpuRow) string {
	var sb strings.Builder
	for _, r := range rows {
		if !r.m.ran() || len(r.m.cpu) == 0 {
			continue
		}
		if sb.Len() == 0 {
			sb.WriteString("\n| CPU per job, batch 100 (µs, median of the runs) | client | PostgreSQL | Redis | all | cores busy | jobs/s | index entries read per job | rows fetched per job |\n" +
				"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		}
		pick := r.m.cpuMedian
		reads := " | |" // a loop without PostgreSQL scans no index
		if entries := pick(func(c cpuSplit) float64 { return float64(c.reads.entries) / float64(c.jobs) }); entries > 0 {
			reads = fmt.Sprintf(" %.2f | %.2f |", entries, pick(func(c cpuSplit) float64 { return float64(c.reads.rows) / float64(c.jobs) }))
		}
		fmt.Fprintf(&sb, "| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %s |%s\n", r.name,
			pick(func(c cpuSplit) float64 { return c.perJob(c.client) }),
			pick(func(c cpuSplit) float64 { return c.perJob(c.postgres) }),
			pick(func(c cpuSplit) float64 { return c.perJob(c.redis) }),
			pick(func(c cpuSplit) float64 { return c.perJob(c.client + c.postgres + c.redis) }),
			pick(func(c cpuSplit) float64 { return c.busy() }), thousands(r.m.median()), reads)
	}
	return sb.String()
}
