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
	// Lag is the number of entries the group furthest behind has not been
	// delivered yet: every group reading the stream holds its entries, so
	// a stalled one bounds the stream as much as the relay's own. When
	// Redis cannot compute a group's lag (after deletions) it counts the
	// whole length, an upper bound. Without groups it is the length:
	// nothing was read.
	Lag int64
	// LagGroup names the group of Lag; empty when there is no group.
	LagGroup   string
	Length     int64 // entries in the stream
	UsedMemory int64 // bytes
	MaxMemory  int64 // bytes; 0 when Redis has no limit
}

// ReadPressure reads the lag of every group of the stream, its length and
// Redis memory use, in one round trip.
func ReadPressure(ctx context.Context, rdb redis.Cmdable, stream string) (Pressure, error) {
	pipe := rdb.Pipeline()
	groups := pipe.XInfoGroups(ctx, stream)
	length := pipe.XLen(ctx, stream)
	info := pipe.Info(ctx, "memory")
	_, _ = pipe.Exec(ctx) // errors are per command, below

	var p Pressure
	if err := length.Err(); err != nil {
		return p, fmt.Errorf("read length of %s: %w", stream, err)
	}
	p.Length = length.Val()
	p.Lag = p.Length
	gs, err := groups.Result()
	switch {
	case err == nil:
		for i, g := range gs {
			lag := g.Lag
			if lag < 0 {
				lag = p.Length
			}
			if i == 0 || lag > p.Lag {
				p.Lag, p.LagGroup = lag, g.Name
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
func parseMemory(info string) (used, limit int64) {
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "used_memory":
			used, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory":
			limit, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return used, limit
}
