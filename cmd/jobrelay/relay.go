package main

import "github.com/jobrelay/jobrelay/relay"

const relayHelp = `Publishes pending_review jobs to the Redis stream, in batches: each cycle
claims up to BATCH_SIZE jobs (SELECT … FOR UPDATE SKIP LOCKED), adds them to
the stream in one round trip, at most once per job and attempt, and commits
them in_review with their entry IDs. Any number of relays run side by side.

It wakes at once on new jobs (LISTEN/NOTIFY), polls every POLL_INTERVAL as a
safety net, holds back while consumers lag by more than MAX_STREAM_LAG, and
sends back to pending_review the in_review jobs whose stream entry was lost.
With --once it relays until nothing is pending and exits.`

func newRelayCommand() command {
	return &pipelineCmd{name: "relay", synopsis: "jobrelay relay [--once] [flags]", help: relayHelp,
		relay: &relay.Config{}, onceFlag: true}
}
