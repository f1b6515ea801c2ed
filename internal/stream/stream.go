// Package stream is the Redis side of jobrelay shared by the relay, the
// consumers and the status command: key names, the entry format, and the Lua
// scripts that must act atomically on a stream.
//
// Every key of a pipeline starts with the stream's name, so `redis-cli --scan
// --pattern 'job_review*'` shows all of them:
//
//	job_review               the stream of jobs to review
//	job_review:dead          the dead-letter stream
//	job_review:sent          index of the dedup records (sorted set)
//	job_review:sent:<minute> dedup records of the idempotent publish (hashes)
//
// The scripts touch keys they are not passed in KEYS, so they run on a single
// Redis server (or a primary with replicas), not on Redis Cluster.
package stream

import (
	"strconv"
	"strings"
)

// Entry fields, all strings. A field whose column is NULL is absent.
const (
	FieldJobID      = "job_id"
	FieldSite       = "site"
	FieldTitle      = "title"
	FieldCompany    = "company"
	FieldJobURL     = "job_url"
	FieldAttempt    = "attempt"
	FieldEnqueuedAt = "enqueued_at"
	FieldPriority   = "priority" // absent for priority 0
	FieldTenant     = "tenant"   // absent for the default tenant
)

// Dead-letter entries carry the original fields and these.
const (
	FieldTaskID     = "task_id"    // the original entry ID
	FieldError      = "error"      // the last handler error
	FieldDeliveries = "deliveries" // how many times it was delivered
	FieldDeadAt     = "dead_at"    // when it was dead-lettered (RFC 3339)
	FieldConsumer   = "consumer"   // the consumer that dead-lettered it
)

// DeadLetterKey is the name of a stream's dead-letter stream.
func DeadLetterKey(stream string) string { return stream + ":dead" }

// dedupIndex is the sorted set that indexes a stream's dedup hashes
// ("<stream>:sent:<minute>").
func dedupIndex(stream string) string { return stream + ":sent" }

// ID is a parsed stream entry ID, ordered as Redis orders them.
type ID struct{ MS, Seq uint64 }

// ParseID parses "<ms>-<seq>" (or "<ms>", meaning seq 0).
func ParseID(s string) (ID, bool) {
	msPart, seqPart, hasSeq := strings.Cut(s, "-")
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return ID{}, false
	}
	var seq uint64
	if hasSeq {
		if seq, err = strconv.ParseUint(seqPart, 10, 64); err != nil {
			return ID{}, false
		}
	}
	return ID{ms, seq}, true
}

// Less reports whether id comes before o.
func (id ID) Less(o ID) bool { return id.MS < o.MS || id.MS == o.MS && id.Seq < o.Seq }
