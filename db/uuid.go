package db

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// uuids turns job IDs into the binary form PostgreSQL takes for uuid[]
// parameters: sent as text, every element would be quoted by the driver
// and parsed by the server, which the profiles of the relay and the
// consumer showed. IDs come from the database or from stream entries the
// relay wrote, so a malformed one is a bug worth an error.
func uuids(ids []string) ([][16]byte, error) {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		if err := parseUUID(id, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckJobID returns an error unless s is a job ID the queries take: a
// UUID in its canonical 8-4-4-4-12 form, as the relay writes it. The
// consumer checks the job_id of each stream entry with it, so that an
// entry naming no job cannot fail a batch of updates.
func CheckJobID(s string) error {
	var b [16]byte
	return parseUUID(s, &b)
}

// parseUUID reads the canonical 8-4-4-4-12 form.
func parseUUID(s string, dst *[16]byte) error {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return fmt.Errorf("invalid job ID %s", quoteShort(s))
	}
	var buf [32]byte
	copy(buf[0:8], s[0:8])
	copy(buf[8:12], s[9:13])
	copy(buf[12:16], s[14:18])
	copy(buf[16:20], s[19:23])
	copy(buf[20:32], s[24:36])
	if _, err := hex.Decode(dst[:], buf[:]); err != nil {
		return fmt.Errorf("invalid job ID %s", quoteShort(s))
	}
	return nil
}

// quoteShort quotes s for an error message, cut after 64 bytes: an ID that
// is not one may be anything, a megabyte included.
func quoteShort(s string) string {
	const shown = 64
	if len(s) > shown {
		return strconv.Quote(s[:shown]) + "…"
	}
	return strconv.Quote(s)
}
