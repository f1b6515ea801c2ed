// Package stream is the Redis side of jobrelay shared by the relay, the
// consumers and the status command: key names, the entry format, and the Lua
// scripts that must act atomically on a stream.
//
// A stream's helper keys carry the stream's name as a Redis Cluster hash
// tag, so they hash to the stream's slot, and the stream itself keeps the
// name users know:
//
//	job_review                    the stream of jobs to review
//	{job_review}:dead             the dead-letter stream
//	{job_review}:sent             dedup records of the idempotent publish (hash)
//	{job_review}:sent:exp         when each batch of dedup records expires (sorted set)
//	{job_review}:retry:<group>    retry records of failed deliveries (hash)
//	{job_review}:health           health reports of relays and consumers (hash)
//
// Every script is passed every key it touches, and touches the keys of one
// stream only, so the scripts run on a single Redis server, a primary with
// replicas behind Sentinel, or Redis Cluster alike.
//
// With partitions (see Partitions), each partition is a stream of its own,
// "job_review:0" to "job_review:<n-1>", with its own helper keys
// ("{job_review:3}:dead"): partitions hash to different slots, and so to
// different nodes of a cluster.
package stream

import (
	"errors"
	"fmt"
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

// helperKey names one of a stream's helper keys: "{<stream>}:<name>", in
// the stream's hash slot.
func helperKey(stream, name string) string { return "{" + stream + "}:" + name }

// DeadLetterKey is the name of a stream's dead-letter stream,
// "{<stream>}:dead".
func DeadLetterKey(stream string) string { return helperKey(stream, "dead") }

// dedupKey is the hash of a stream's dedup records (see publishScript).
func dedupKey(stream string) string { return helperKey(stream, "sent") }

// dedupExpiryKey is the sorted set of when each dedup record expires.
func dedupExpiryKey(stream string) string { return helperKey(stream, "sent:exp") }

// CheckName refuses a stream name that would break the keys' hash tags: a
// brace in it would make Redis Cluster hash the stream and its helper keys
// to different slots.
func CheckName(stream string) error {
	if stream == "" {
		return errors.New("the stream name is empty")
	}
	if strings.ContainsAny(stream, "{}") {
		return fmt.Errorf("the stream name %q holds a brace, which Redis Cluster reads as a hash tag", stream)
	}
	return nil
}

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
