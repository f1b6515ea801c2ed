package stream

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// Partitions names the n streams a pipeline whose stream is base spreads
// its jobs over: base itself for n <= 1, which is the layout of a pipeline
// without partitions, and "<base>:0" to "<base>:<n-1>" otherwise. Each
// name hashes to its own Redis Cluster slot, so the partitions spread over
// the cluster's primaries, and each reads naturally in `redis-cli XINFO
// STREAM job_review:3`.
func Partitions(base string, n int) []string {
	if n <= 1 {
		return []string{base}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = base + ":" + strconv.Itoa(i)
	}
	return out
}

// PartitionOf is the index, among n partitions, of the partition a job
// goes to: FNV-1a of its ID, modulo n. The hash is part of the stream
// layout: every relay of a pipeline, whatever its version, must agree on
// it.
func PartitionOf(jobID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(jobID))
	return int(h.Sum32() % uint32(n))
}

// IsPartition reports whether name is one of base's streams for some
// number of partitions: base itself, or "<base>:<k>". Jobs of a stream that
// is no longer among the current partitions (after STREAM_PARTITIONS
// changed) are still read and reaped until none is left.
func IsPartition(base, name string) bool {
	if name == base {
		return true
	}
	k, ok := strings.CutPrefix(name, base+":")
	if !ok || k == "" {
		return false
	}
	for _, c := range k {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
