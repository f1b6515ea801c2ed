package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

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

// ReadPressure reads the lag of every group of the streams (the
// partitions of a pipeline), their length and Redis memory use, in one
// round trip per node. With several streams, Length and each group's lag
// are their totals; on Redis Cluster the memory is that of the primary
// nearest its limit (the fullest without one).
func ReadPressure(ctx context.Context, rdb redis.Cmdable, streams ...string) (Pressure, error) {
	pipe := rdb.Pipeline()
	groups := make([]*redis.XInfoGroupsCmd, len(streams))
	lengths := make([]*redis.IntCmd, len(streams))
	for i, s := range streams {
		groups[i] = pipe.XInfoGroups(ctx, s)
		lengths[i] = pipe.XLen(ctx, s)
	}
	cluster, isCluster := rdb.(*redis.ClusterClient)
	var info *redis.StringCmd
	if !isCluster {
		info = pipe.Info(ctx, "memory")
	}
	_, _ = pipe.Exec(ctx) // errors are per command, below

	var p Pressure
	lags := map[string]int64{}
	var order []string
	for i, s := range streams {
		if err := lengths[i].Err(); err != nil {
			return p, fmt.Errorf("read length of %s: %w", s, err)
		}
		length := lengths[i].Val()
		p.Length += length
		gs, err := groups[i].Result()
		switch {
		case err == nil:
			for _, g := range gs {
				lag := g.Lag
				if lag < 0 {
					lag = length
				}
				if _, ok := lags[g.Name]; !ok {
					order = append(order, g.Name)
				}
				lags[g.Name] += lag
			}
		case IsNoSuchKey(err):
		default:
			return p, fmt.Errorf("read groups of %s: %w", s, err)
		}
	}
	// A group that reads only some of the streams has not read the others.
	p.Lag = p.Length
	for i, g := range order {
		if i == 0 || lags[g] > p.Lag {
			p.Lag, p.LagGroup = lags[g], g
		}
	}
	if isCluster {
		var err error
		p.UsedMemory, p.MaxMemory, err = clusterMemory(ctx, cluster)
		return p, err
	}
	text, err := info.Result()
	if err != nil {
		return p, fmt.Errorf("read Redis memory: %w", err)
	}
	p.UsedMemory, p.MaxMemory = parseMemory(text)
	return p, nil
}

// clusterMemory reads the memory of every primary of the cluster and
// returns that of the one nearest its limit.
func clusterMemory(ctx context.Context, rdb *redis.ClusterClient) (used, limit int64, err error) {
	var mu sync.Mutex
	best := -1.0
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		text, err := node.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		u, l := parseMemory(text)
		fill := float64(u) // without a limit: the bytes used
		if l > 0 {
			fill /= float64(l)
		}
		mu.Lock()
		defer mu.Unlock()
		// A primary with a limit beats one without; then the fuller one.
		if (l > 0 && limit <= 0) || ((l > 0) == (limit > 0) && fill > best) {
			used, limit, best = u, l, fill
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("read Redis memory: %w", err)
	}
	return used, limit, nil
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
