package relay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// TestARowTheReaperCannotSendBackIsIsolated: one in_review row whose way
// back to pending_review the database refuses (an application trigger)
// used to fail the reaper's whole UPDATE, every pass, so no lost job of
// the stream was ever re-enqueued. The row is isolated, reported once, and
// the other lost jobs go back to pending_review.
func TestARowTheReaperCannotSendBackIsIsolated(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := setup(t)
	cfg := b.cfg
	cfg.ReenqueueAfter = 10 * time.Minute
	r := b.newRelay(t, cfg)

	b.relayLost(t, r, 50)

	bad := b.pickJob(t, 17)
	b.sql(t, `
CREATE FUNCTION noreap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = '`+bad+`' AND OLD.status = 'in_review' AND NEW.status = 'pending_review' THEN
        RAISE EXCEPTION 'job % may not go back', NEW.id;
    END IF;
    RETURN NEW;
END $$`)
	b.sql(t, `CREATE TRIGGER noreap BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION noreap()`)

	for range 3 {
		require.NoError(t, r.reap(ctx)) // passes on the poll tick
	}
	require.Equal(t, 49, b.countWhere(t, `status = 'pending_review'`),
		"the 49 lost jobs the database lets go back are re-enqueued despite one refused row")
	require.Equal(t, 1, b.countWhere(t, `status = 'in_review'`))
	require.Len(t, b.logger.Matching("refuses to send a lost job back"), 1, "reported once, not every pass")
}
