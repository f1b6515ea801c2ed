package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// repeat runs a throughput scenario b.o.runs times and returns the median
// and the largest peak RSS seen.
func (b *bench) repeat(ctx context.Context, name string, f func() (float64, int64, error)) (float64, int64, error) {
	var vals []float64
	var peak int64
	for i := range b.o.runs {
		v, rss, err := f()
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		b.log("%-44s run %d: %8.0f jobs/s", name, i+1, v)
		vals = append(vals, v)
		peak = max(peak, rss)
	}
	return median(vals), peak, nil
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
	type cfg struct{ batch, n int }
	configs := []cfg{{100, 1}, {100, 3}, {1000, 1}, {1000, 3}}
	// The PostgreSQL limit, by connections working side by side; a relay
	// drains a backlog with RELAY_WORKERS (2) connections.
	pgConfigs := []cfg{{100, 1}, {100, 2}, {100, 3}, {1000, 1}, {1000, 2}, {1000, 3}}

	pg := map[cfg]float64{}
	for _, c := range pgConfigs {
		if !b.runs("limits") && !b.runs("relay") {
			break
		}
		pg[c], _, err = b.repeat(ctx, fmt.Sprintf("PostgreSQL limit, batch %d, %d worker(s)", c.batch, c.n),
			noRSS(func() (float64, error) { return b.pgLimit(ctx, c.batch, c.n) }))
		if err != nil {
			return "", err
		}
	}
	redisLimit := map[int]float64{}
	for _, batch := range []int{100, 1000} {
		if !b.runs("limits") {
			break
		}
		redisLimit[batch], _, err = b.repeat(ctx, fmt.Sprintf("Redis limit, pipelined XADD, batch %d", batch),
			noRSS(func() (float64, error) { return b.redisLimit(ctx, batch) }))
		if err != nil {
			return "", err
		}
	}
	relays := map[cfg]float64{}
	var relayRSS200k int64
	var sequential float64 // one relay, RELAY_WORKERS=1, batch 100
	for _, c := range configs {
		if !b.runs("relay") && !b.runs("poller") && !b.runs("memory") {
			break
		}
		var rss int64
		relays[c], rss, err = b.repeat(ctx, fmt.Sprintf("jobrelay relay --once, batch %d, %d replica(s)", c.batch, c.n),
			func() (float64, int64, error) { return b.relayRun(ctx, c.batch, c.n, 2, b.o.jobs) })
		if err != nil {
			return "", err
		}
		if c == (cfg{100, 1}) {
			relayRSS200k = rss
			sequential, _, err = b.repeat(ctx, "jobrelay relay --once, batch 100, 1 replica, 1 worker",
				func() (float64, int64, error) { return b.relayRun(ctx, 100, 1, 1, b.o.jobs) })
			if err != nil {
				return "", err
			}
		}
	}
	var poller float64
	if b.runs("poller") {
		if poller, _, err = b.repeat(ctx, "old poller's pattern", noRSS(func() (float64, error) { return b.oldPoller(ctx) })); err != nil {
			return "", err
		}
	}
	type ccfg struct{ n, concurrency int }
	cconfigs := []ccfg{{1, 8}, {2, 8}, {1, 64}, {2, 64}}
	cons := map[ccfg]float64{}
	var consumerRSS int64
	for _, c := range cconfigs {
		if !b.runs("consumers") {
			break
		}
		var rss int64
		cons[c], rss, err = b.repeat(ctx, fmt.Sprintf("jobrelay consume x%d, CONCURRENCY %d", c.n, c.concurrency),
			func() (float64, int64, error) { return b.consumers(ctx, c.n, c.concurrency) })
		if err != nil {
			return "", err
		}
		consumerRSS = max(consumerRSS, rss)
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
		b.log("latency run %d: to entry p50 %.2f p99 %.2f max %.2f ms; to handler p50 %.2f p99 %.2f max %.2f ms",
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
	var backlogRate float64
	var backlogRSS int64
	if b.runs("memory") {
		b.log("relay draining a backlog of %d jobs (memory)", b.o.backlog)
		if backlogRate, backlogRSS, err = b.relayRun(ctx, 100, 1, 2, b.o.backlog); err != nil {
			return "", fmt.Errorf("backlog: %w", err)
		}
	}
	idleQueries, idleCommands := -1, -1
	if b.runs("idle") {
		b.log("idle relay")
		if idleQueries, idleCommands, err = b.idleRelay(ctx, 10*time.Second); err != nil {
			return "", fmt.Errorf("idle relay: %w", err)
		}
	}

	var sb strings.Builder
	sb.WriteString(machine)
	sb.WriteString("\n| scenario | jobs/s | ratio | target |\n| --- | ---: | ---: | --- |\n")
	row := func(name string, v float64, ratio string, target string) {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", name, thousands(v), ratio, target)
	}
	for _, c := range pgConfigs {
		row(fmt.Sprintf("PostgreSQL limit: claim + update + commit, batch %d, %d connection(s)", c.batch, c.n), pg[c], "1.00", "")
	}
	for _, batch := range []int{100, 1000} {
		row(fmt.Sprintf("Redis limit: pipelined XADD, batch %d", batch), redisLimit[batch], "", "")
	}
	row("jobrelay relay, batch 100, 1 replica, RELAY_WORKERS=1 (one cycle at a time)", sequential,
		fmt.Sprintf("%.2f", sequential/pg[cfg{100, 1}]), "")
	for _, c := range configs {
		ratio := relays[c] / pg[c]
		target := ""
		switch c {
		case cfg{100, 1}:
			target = check(ratio >= 0.7, "≥ 0.70 × PostgreSQL limit")
		case cfg{100, 3}:
			target = check(ratio >= 0.65 && relays[c] > relays[cfg{100, 1}], "≥ 0.65 × limit, faster than one relay")
		}
		row(fmt.Sprintf("jobrelay relay, batch %d, %d replica(s) × 2 workers, idempotent publish", c.batch, c.n), relays[c],
			fmt.Sprintf("%.2f (%.2f of %d connections)", ratio, relays[c]/pg[cfg{c.batch, min(2*c.n, 3)}], min(2*c.n, 3)), target)
	}
	row("the old poller's pattern (per job: XADD, UPDATE, COMMIT)", poller,
		fmt.Sprintf("relay %.0f×", relays[cfg{100, 1}]/poller), check(relays[cfg{100, 1}] >= 10*poller, "relay ≥ 10×"))
	for _, c := range cconfigs {
		target := ""
		if c == (ccfg{2, 64}) {
			target = check(cons[c] >= 100_000, "≥ 100,000 jobs/s with 2 consumers")
		}
		row(fmt.Sprintf("jobrelay consume ×%d, CONCURRENCY %d, no-op handler, update + XACK", c.n, c.concurrency), cons[c], "", target)
	}
	fmt.Fprintf(&sb, "\n| latency at %d inserts/s, default POLL_INTERVAL | p50 | p99 | max | target |\n| --- | ---: | ---: | ---: | --- |\n", b.o.rate)
	fmt.Fprintf(&sb, "| INSERT commit → entry in the stream | %.2f ms | %.2f ms | %.2f ms | %s |\n",
		med(func(l latencies) float64 { return l.toEntry[0] }), med(func(l latencies) float64 { return l.toEntry[1] }),
		med(func(l latencies) float64 { return l.toEntry[2] }), check(med(func(l latencies) float64 { return l.toEntry[1] }) <= 2, "p99 ≤ 2 ms"))
	fmt.Fprintf(&sb, "| INSERT commit → handler start | %.2f ms | %.2f ms | %.2f ms | %s |\n",
		med(func(l latencies) float64 { return l.toHandler[0] }), med(func(l latencies) float64 { return l.toHandler[1] }),
		med(func(l latencies) float64 { return l.toHandler[2] }), check(med(func(l latencies) float64 { return l.toHandler[1] }) <= 5, "p99 ≤ 5 ms"))

	sb.WriteString("\n| memory and idleness | measured | target |\n| --- | ---: | --- |\n")
	fmt.Fprintf(&sb, "| relay peak RSS draining %s pending jobs (at %s jobs/s) | %.1f MB | %s |\n", thousands(float64(b.o.backlog)),
		thousands(backlogRate), mb(backlogRSS), check(mb(backlogRSS) <= 50, "≤ 50 MB"))
	fmt.Fprintf(&sb, "| relay peak RSS draining %s pending jobs | %.1f MB | %s |\n", thousands(float64(b.o.jobs)), mb(relayRSS200k),
		check(float64(backlogRSS) <= 1.25*float64(relayRSS200k), "flat in the backlog size"))
	fmt.Fprintf(&sb, "| consumer peak RSS (largest of the consumer runs) | %.1f MB | |\n", mb(consumerRSS))
	fmt.Fprintf(&sb, "| idle relay over 10 s: database statements, Redis commands | %d, %d | %s |\n", idleQueries, idleCommands,
		check(idleQueries == 0 && idleCommands == 0, "none beyond its poll and LISTEN"))
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
