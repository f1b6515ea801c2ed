package consumer

import (
	"context"

	"github.com/jobrelay/jobrelay/internal/stream"
)

// verifyEntriesUpTo makes the status of every job whose entry the stream
// holds now checked before its first delivery, as verifyEntriesBefore
// does, but by the stream's last entry ID instead of the clock: called
// once the group was created, it spares the entries added after that the
// status check that verifyEntriesBefore's margin would give them for a
// minute, a query per read. It never narrows a window set already (a
// recovered group keeps verifyEntriesBefore's); if Redis cannot tell the
// last ID, verifyEntriesBefore decides.
func (c *Consumer) verifyEntriesUpTo(ctx context.Context) {
	info, err := c.rdb.XInfoStream(ctx, c.cfg.Stream).Result()
	if err != nil {
		c.verifyEntriesBefore()
		return
	}
	last, ok := stream.ParseID(info.LastGeneratedID)
	if !ok {
		c.verifyEntriesBefore()
		return
	}
	// Entries of the last ID's millisecond are checked, all the others
	// after it are new to the group.
	upTo := int64(last.MS) + 1
	for {
		cur := c.verifyBefore.Load()
		if cur >= upTo || c.verifyBefore.CompareAndSwap(cur, upTo) {
			return
		}
	}
}
