package db

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// FairParams shares a claim between the tenants that have pending work, so
// that one tenant's flood does not hold back the others' jobs: each tenant
// with pending jobs gets a share of the claim (Limit × its weight ÷ the
// weights of all, and at least 10 × its weight: see fairShareMin), its jobs
// highest priority first. When the shares add up to more than Limit, the
// claim starts with the tenant after After, in name order, wrapping
// around: every tenant gets its turn.
//
// Cost: the tenants are found by skipping through the partial index on
// (coalesce(tenant, ""), …) one tenant at a time, and each tenant served
// costs an index scan of its jobs: a claim costs an index probe per tenant
// with pending work and a scan per tenant served, however many jobs each
// has.
type FairParams struct {
	// After is the tenant the previous claim served last ("" is the
	// default tenant): this one starts with the next.
	After string
	// Weights maps tenants to their weight; unlisted tenants weigh 1.
	Weights map[string]int
	// Tenants, if not nil, are the tenants known to have pending jobs
	// (Claimed.Tenants of an earlier claim): the claim asks only these,
	// and looks for the others only if they have no job left. Finding the
	// tenants costs an index probe per tenant, which a relay pays once in
	// a while rather than at every claim. Ignored with MaxInFlight, whose
	// claims find and lock the tenants every time.
	Tenants []string
	// MaxInFlight, above 0, caps each tenant's jobs in_review: a claim
	// takes no more of a tenant's jobs than its cap less its jobs
	// in_review. Claims that count a tenant's jobs in flight hold an
	// advisory lock on it until they commit, so relays claiming side by
	// side never pass the cap together; a tenant another claim holds is
	// passed over until that claim commits.
	MaxInFlight int
}

// fairShareMin is the fewest jobs a tenant's share of a claim holds (times
// its weight), unless the claim is smaller: with more tenants than a
// claim can give that many, claims take turns, and each claim asks fewer
// tenants. Every tenant costs a claim an index scan, which, until VACUUM
// passes, steps over the entries of the tenant's jobs claimed before.
const fairShareMin = "10"

// fairTenantsSQL lists the tenants with pending jobs ("" for the default
// tenant): a loose index scan, one probe per tenant. It goes backwards,
// from the last tenant: each probe lands on the newest entry of the
// tenant before, which is pending. Going forwards, it would land on the
// oldest, the entries of jobs claimed since the last VACUUM, and step
// over all of them at every claim.
const fairTenantsSQL = `
WITH RECURSIVE tenants AS (
    (SELECT coalesce(tenant, '') AS t FROM jobs
     WHERE status = 'pending_review' ORDER BY 1 DESC LIMIT 1)
  UNION ALL
    SELECT (SELECT coalesce(j.tenant, '') FROM jobs j
            WHERE j.status = 'pending_review' AND coalesce(j.tenant, '') < tenants.t
            ORDER BY 1 DESC LIMIT 1)
    FROM tenants WHERE tenants.t IS NOT NULL
)`

// listTenantsSQL lists the tenants with pending jobs.
const listTenantsSQL = fairTenantsSQL + `
SELECT coalesce(array_agg(t), '{}') FROM tenants WHERE t IS NOT NULL`

// lockTenantsSQL takes the in-flight lock of every tenant with pending jobs
// that no other transaction holds, and returns those tenants. It runs as a
// statement of its own before the claim, so that the claim's snapshot
// sees every job another claim of these tenants committed.
const lockTenantsSQL = fairTenantsSQL + `
SELECT coalesce(array_agg(t) FILTER (WHERE locked), '{}'), count(*)
FROM (SELECT t, pg_try_advisory_xact_lock(` + tenantLockKey + `) AS locked
      FROM tenants WHERE t IS NOT NULL) l`

// tenantLockKey is the advisory lock of tenant t for in-flight counting,
// per schema: deployments in other schemas of the database have their own.
const tenantLockKey = `hashtext('jobrelay tenant in flight'), hashtext(current_schema() || '.' || t)`

// fairClaimSQL claims each tenant's share. Parameters: $1 limit, $2 jobs
// to pass over, $3 and $4 weights (names, weights), $5 the tenant served
// last, $6 the cap on jobs in flight (0: none), $7 the tenants to ask.
// Each tenant's jobs come {{order}}; a row holds {{columns}} (of j, each
// tenant's jobs, from {{jobColumns}}), and its tenant's quota. The
// lateral subquery locks only the rows it returns, and the outer LIMIT
// stops asking tenants once the claim is full, so no row is locked that
// is not claimed.
const fairClaimSQL = `
WITH turns AS (
    SELECT t, coalesce(w.weight, 1) AS weight
    FROM unnest($7::text[]) AS tenants(t) LEFT JOIN unnest($3::text[], $4::int[]) AS w(name, weight) ON w.name = t
    WHERE t IS NOT NULL
), shares AS (
    SELECT t, greatest(least($1::int, ` + fairShareMin + `) * weight, ($1::int * weight) / sum(weight) OVER ())::int AS share
    FROM turns
), quotas AS MATERIALIZED (
    SELECT t, CASE WHEN $6::int <= 0 THEN share ELSE least(share, $6::int - CASE WHEN t = '' THEN (
        SELECT count(*) FROM (
            SELECT 1 FROM jobs i
            WHERE i.status = 'in_review' AND coalesce(i.tenant, '') = ''
            LIMIT greatest($6::int, 0)) x)
      ELSE (
        SELECT count(*) FROM (
            SELECT 1 FROM jobs i
            WHERE i.status = 'in_review' AND i.tenant IS NOT NULL AND i.tenant = t
            LIMIT greatest($6::int, 0)) x)
      END)::int END AS quota
    FROM shares
    ORDER BY t <= $5::text, t
)
SELECT {{columns}}, q.t, q.quota
FROM quotas q
CROSS JOIN LATERAL (
    SELECT {{jobColumns}} FROM jobs
    WHERE status = 'pending_review' AND coalesce(tenant, '') = q.t AND id <> ALL($2::uuid[])
    ORDER BY {{order}}
    LIMIT q.quota
    FOR UPDATE SKIP LOCKED) j
WHERE q.quota > 0
LIMIT $1`

// fairSQL is fairClaimSQL with each tenant's jobs in order. A claim reads
// the columns a claim publishes; an isolating one (idsOnly) reads the
// jobs' IDs alone, which always read, whatever the other columns hold (see
// BeginClaimIDs). Either returns the tenant's name as the claim was given
// it.
func fairSQL(order string, idsOnly bool) string {
	columns, jobColumns := "j.id::text, j.site, j.job_url, j.title, j.company, j.attempts, j.priority, j.tenant",
		"id, site, job_url, title, company, attempts, priority, tenant"
	if idsOnly {
		columns, jobColumns = "j.id::text", "id"
	}
	return strings.NewReplacer("{{order}}", order, "{{columns}}", columns, "{{jobColumns}}", jobColumns).Replace(fairClaimSQL)
}

// The statements of a fair claim: by priority, or oldest first; and of an
// isolating one.
var (
	fairByPrioritySQL    = fairSQL("priority DESC, created_at", false)
	fairOldestSQL        = fairSQL("created_at", false)
	fairIDsByPrioritySQL = fairSQL("priority DESC, created_at", true)
	fairIDsOldestSQL     = fairSQL("created_at", true)
)

// beginFairClaim is BeginClaimWith for p.Fair. It takes two round trips
// when it looks for the tenants with pending jobs (always with a cap on
// jobs in flight, which locks them), one otherwise. If isolating, it
// begins an isolating transaction and claims as BeginClaimIDs does: the
// jobs hold their IDs alone.
func beginFairClaim(ctx context.Context, conn *pgx.Conn, p *ClaimParams, isolating bool, dst []Job) (jobs []Job, c Claimed, err error) {
	jobs = dst[:0]
	f := p.Fair
	except, err := uuids(p.Except)
	if err != nil {
		return nil, c, fmt.Errorf("claim pending jobs: %w", err)
	}
	names := make([]string, 0, len(f.Weights))
	weights := make([]int32, 0, len(f.Weights))
	for name, w := range f.Weights {
		names = append(names, name)
		weights = append(weights, int32(min(w, 1<<20)))
	}
	sql := fairByPrioritySQL
	switch {
	case isolating && p.Oldest:
		sql = fairIDsOldestSQL
	case isolating:
		sql = fairIDsByPrioritySQL
	case p.Oldest:
		sql = fairOldestSQL
	}

	var b pgx.Batch
	queueBegin(&b, p.Timeout)
	if isolating {
		b.Queue(constraintsImmediateSQL)
	}
	tenants := f.Tenants
	// list finds the tenants with pending jobs, and with a cap locks them.
	list := func() error {
		if f.MaxInFlight > 0 {
			var active int
			b.Queue(lockTenantsSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&tenants, &active) })
			if err := conn.SendBatch(ctx, &b).Close(); err != nil {
				return fmt.Errorf("claim pending jobs: lock tenants: %w", err)
			}
			// A tenant another claim holds is passed over: its jobs wait.
			c.Held = len(tenants) < active
		} else {
			b.Queue(listTenantsSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&tenants) })
			if err := conn.SendBatch(ctx, &b).Close(); err != nil {
				return fmt.Errorf("claim pending jobs: list tenants: %w", err)
			}
			c.Tenants = tenants
		}
		b = pgx.Batch{}
		return nil
	}
	listed := tenants == nil || f.MaxInFlight > 0
	if listed {
		if err := list(); err != nil {
			return nil, c, err
		}
	}
	got := make(map[string]int) // jobs per tenant, to tell whether one had more
	claim := func() error {
		if len(tenants) == 0 {
			return nil
		}
		b.Queue(sql, p.Limit, except, names, weights, f.After, f.MaxInFlight, tenants).Query(func(rows pgx.Rows) error {
			var j Job
			var tenant string
			var quota int32
			dst := []any{&j.ID, &j.Site, &j.JobURL, &j.Title, &j.Company, &j.Attempts, &j.Priority, &j.Tenant, &tenant, &quota}
			if isolating {
				dst = []any{&j.ID, &tenant, &quota}
			}
			for rows.Next() {
				j = Job{}
				if err := rows.Scan(dst...); err != nil {
					return err
				}
				jobs = append(jobs, j)
				got[tenant]++
				if got[tenant] == int(quota) {
					c.More = true // the tenant's share is full: it may have more
				}
			}
			return rows.Err()
		})
		if err := conn.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("claim pending jobs: %w", err)
		}
		b = pgx.Batch{}
		return nil
	}
	if err := claim(); err != nil {
		return nil, c, err
	}
	if len(jobs) == 0 && !listed {
		// The tenants known have nothing left: look for others.
		if err := list(); err != nil {
			return nil, c, err
		}
		if err := claim(); err != nil {
			return nil, c, err
		}
	}
	c.More = c.More || len(jobs) == p.Limit
	if f.MaxInFlight > 0 {
		// A locked tenant that got nothing is at its cap (or its jobs are
		// locked by an isolating relay): its jobs wait for jobs in flight.
		c.Held = c.Held || len(got) < len(tenants)
	}
	return jobs, c, nil
}
