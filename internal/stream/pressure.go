package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Pressure is what the relay reads before claiming more work: how far the
// consumers are behind, and how full Redis is.
type Pressure struct {
	// Lag is the number of entries the group has not been delivered yet.
	// Without the group it is the stream's length: nothing was read. When
	// Redis cannot compute the lag (after deletions) it is the length too,
	// an upper bound.
	Lag        int64
	UsedMemory int64 // bytes
	MaxMemory  int64 // bytes; 0 when Redis has no limit
}

// ReadPressure reads the group's lag and Redis memory use in one round trip.
func ReadPressure(ctx context.Context, rdb redis.Cmdable, stream, group string) (Pressure, error) {
	pipe := rdb.Pipeline()
	groups := pipe.XInfoGroups(ctx, stream)
	length := pipe.XLen(ctx, stream)
	info := pipe.Info(ctx, "memory")
	_, _ = pipe.Exec(ctx) // errors are per command, below

	var p Pressure
	if err := length.Err(); err != nil {
		return p, fmt.Errorf("read length of %s: %w", stream, err)
	}
	p.Lag = length.Val()
	gs, err := groups.Result()
	switch {
	case err == nil:
		for _, g := range gs {
			if g.Name == group && g.Lag >= 0 {
				p.Lag = g.Lag
			}
		}
	case IsNoSuchKey(err):
		// No stream yet: nothing to deliver.
	default:
		return p, fmt.Errorf("read groups of %s: %w", stream, err)
	}
	text, err := info.Result()
	if err != nil {
		return p, fmt.Errorf("read Redis memory: %w", err)
	}
	p.UsedMemory, p.MaxMemory = parseMemory(text)
	return p, nil
}

// IsNoSuchKey tells the error Redis gives for a stream that does not exist.
func IsNoSuchKey(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(rerr.Error(), "no such key")
}

// parseMemory reads used_memory and maxmemory from INFO memory.
func parseMemory(info string) (used, max int64) {
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "used_memory":
			used, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory":
			max, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return used, max
}
