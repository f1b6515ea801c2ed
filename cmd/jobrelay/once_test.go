package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
)

func TestRelayOnceReportsTheJobsItCouldNotRelay(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	dir := t.TempDir()
	code, out := runBinary(t, dir, pl.env, "seed", "-n", "300")
	require.Zero(t, code, out)
	ctx := ctxT(t)
	var bad string
	require.NoError(t, pl.schema.Pool.QueryRow(ctx, `SELECT id::text FROM jobs ORDER BY created_at, id OFFSET 123 LIMIT 1`).Scan(&bad))
	// The application's trigger refuses one job.
	_, err := pl.schema.Pool.Exec(ctx, `
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = '`+bad+`' AND NEW.status = 'in_review' THEN
        RAISE EXCEPTION 'not this one';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION refuse()`)
	require.NoError(t, err)

	code, out = runBinary(t, dir, pl.env, "relay", "--once")
	require.Zero(t, code, out)
	require.Contains(t, out, `"msg":"relay: 1 jobs could not be relayed (see their last_error)"`)
	require.Contains(t, out, `"job_ids":["`+bad+`"]`)
	require.Contains(t, out, `"num_relayed":299`)
	c := counts(t, pl)
	require.EqualValues(t, 299, c[db.StatusInReview])
	require.EqualValues(t, 1, c[db.StatusFailed])
}
