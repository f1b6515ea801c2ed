package relay

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// logPublishPath says how publishing is made idempotent on this server.
// Redis 8.6's native XADD IDMP is not used: it keeps at most 10,000 ids per
// producer (IDMP-MAXSIZE), which at tens of thousands of jobs per second
// forgets a batch within a fraction of a second, sooner than a dead relay's
// row locks are released. The script keeps the records of uncommitted
// batches for DedupTTL whatever the rate, and costs no memory once a batch
// commits.
func (r *Relay) logPublishPath(ctx context.Context) {
	version := redisVersion(ctx, r.rdb)
	attrs := []slog.Attr{slog.String("redis_version", version)}
	if version == "" {
		attrs[0] = slog.String("redis_version", "unknown (unreachable for now)")
	}
	if atLeast(version, 8, 6) {
		attrs = append(attrs, slog.String("note", "XADD IDMP is available but not used: IDMP-MAXSIZE caps its window at 10,000 ids per producer"))
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "relay: idempotent publish through the dedup script (records of uncommitted batches kept for DedupTTL)", attrs...)
}

// atLeast compares a "major.minor.patch" version.
func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (ma > major || ma == major && mi >= minor)
}

// redisVersion reads the server's version once, for the start-up log.
func redisVersion(ctx context.Context, rdb redis.UniversalClient) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return ""
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return ""
}
