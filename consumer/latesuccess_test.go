package consumer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
)

func TestALateSuccessWinsOverTheDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 1)

	// The frozen consumer: its handler blocks, and it never refreshes its
	// claim (as if stopped by SIGSTOP or a long GC pause).
	started, release := make(chan struct{}), make(chan struct{})
	frozen := b.cfg
	frozen.ReclaimIdle = time.Hour
	frozen.DeleteConsumersAfter = -1
	frozen.Handler = HandlerFunc(func(context.Context, Job) error {
		close(started)
		<-release
		return nil
	})
	b.start(t, frozen)
	<-started

	// Another consumer takes the entry over once idle and, delivered more
	// than MaxDeliveries times, dead-letters it.
	var otherCalls atomic.Int32
	other := b.cfg
	other.MaxDeliveries = 1
	other.Handler = HandlerFunc(func(context.Context, Job) error { otherCalls.Add(1); return errors.New("not expected") })
	b.start(t, other)
	soon(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "dead-lettered by the other consumer")
	require.Len(t, b.deadLetters(t), 1)

	close(release) // the frozen handler succeeds after all
	soon(t, func() bool { return b.count(t, db.StatusReviewed) == 1 }, "the success wins")
	status, lastError := b.row(t, ids[0])
	require.Equal(t, db.StatusReviewed, status)
	require.Nil(t, lastError)
	soon(t, func() bool { return len(b.deadLetters(t)) == 0 }, "its dead letter is gone")
	require.Zero(t, otherCalls.Load())
	require.Zero(t, b.pending(t))
}

func TestAReviewedJobHasNoLastError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 1)
	var seen calls
	cfg := b.cfg
	cfg.Handler = HandlerFunc(func(_ context.Context, j Job) error {
		if seen.add(j.ID) == 1 {
			return errors.New("review service said 500")
		}
		return nil
	})
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 1 }, "reviewed on the second delivery")
	require.Equal(t, 2, seen.get(ids[0]))
	_, lastError := b.row(t, ids[0])
	require.Nil(t, lastError, "last_error is cleared when the job is reviewed")
}
