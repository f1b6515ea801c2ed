package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Level is the pending work of one priority or one tenant.
type Level struct {
	Priority int16  // of ReadLevels' byPriority
	Tenant   string // of its byTenant: "" is the default tenant
	// Other marks the sum of the levels beyond the cap.
	Other         bool
	Pending       int64
	OldestPending time.Time // created_at of the oldest
}

// levelsSQL groups the pending jobs by a key (%[1]s: priority, or tenant
// with "" for the default one) and keeps the first $1 groups in an order
// (%[2]s), summing the others into a row whose key is NULL. It reads the
// pending rows only (their partial indexes), never the reviewed ones.
const levelsSQL = `
WITH g AS (
    SELECT %[1]s AS k, count(*) AS n, min(created_at) AS oldest
    FROM jobs WHERE status = 'pending_review' GROUP BY 1
), r AS (
    SELECT k, n, oldest, row_number() OVER (ORDER BY %[2]s) AS rank FROM g
)
SELECT CASE WHEN rank <= $1 THEN k END AS key, sum(n)::bigint, min(oldest)
FROM r GROUP BY 1 ORDER BY min(rank)`

var (
	priorityLevelsSQL = fmt.Sprintf(levelsSQL, "priority", "k DESC")
	tenantLevelsSQL   = fmt.Sprintf(levelsSQL, "coalesce(tenant, '')", "n DESC, k")
)

// ReadLevels reads the pending jobs by priority (the maxPriorities highest
// ones, highest first) and by tenant (the maxTenants with most pending
// jobs, most first), each with the rest summed in a last Level marked
// Other.
func ReadLevels(ctx context.Context, q DBTX, maxPriorities, maxTenants int) (byPriority, byTenant []Level, err error) {
	if byPriority, err = readLevels(ctx, q, priorityLevelsSQL, maxPriorities, true); err != nil {
		return nil, nil, fmt.Errorf("read pending jobs by priority: %w", err)
	}
	if byTenant, err = readLevels(ctx, q, tenantLevelsSQL, maxTenants, false); err != nil {
		return nil, nil, fmt.Errorf("read pending jobs by tenant: %w", err)
	}
	return byPriority, byTenant, nil
}

func readLevels(ctx context.Context, q DBTX, sql string, limit int, priority bool) ([]Level, error) {
	rows, err := q.Query(ctx, sql, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Level, error) {
		var l Level
		var p *int16
		var t *string
		key := any(&t)
		if priority {
			key = &p
		}
		if err := row.Scan(key, &l.Pending, &l.OldestPending); err != nil {
			return l, err
		}
		switch {
		case p != nil:
			l.Priority = *p
		case t != nil:
			l.Tenant = *t
		default:
			l.Other = true
		}
		return l, nil
	})
}
