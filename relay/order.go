package relay

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrelay/jobrelay/db"
)

// Claim order. Claims take the highest priority first (the partial index
// on priority DESC, created_at), and one claim in AgingEvery takes the
// oldest jobs whatever their priority, unless PriorityStrict: that is what
// keeps lower priorities flowing. With TenantFair each claim is shared
// between the tenants with pending jobs, by weight, starting after the
// tenant the last claim served, so that with more tenants than jobs per
// claim every tenant gets its turn (see db.FairParams). The tenants with
// pending jobs are looked for every tenantsFresh, not at every claim.
//
// The order of the claims decides only as far as the stream is short: a
// job claimed waits behind the entries consumers have not read. That is
// what MaxStreamLag bounds; TenantFair makes it default to
// MaxStreamLagFairDefault.
type claimOrder struct {
	claims atomic.Uint64 // claims made, for aging

	mu        sync.Mutex
	after     string    // the tenant the last fair claim served last
	tenants   []string  // the tenants with pending jobs, as a claim found them
	tenantsAt time.Time // when

	// held is set when a claim passed over a tenant at its cap of jobs in
	// flight: Run then claims again after pressureInterval, since the
	// reviews that make room send no notification.
	held atomic.Bool
}

// tenantsFresh is how long fair claims go on the tenants a claim found
// before looking again: a tenant whose first jobs arrive while others'
// backlog drains waits up to this long for its first claim. Looking costs
// an index probe per tenant, at every claim otherwise.
const tenantsFresh = 100 * time.Millisecond

// claimParams says what the next claim of at most limit jobs takes.
func (r *Relay) claimParams(limit int) *db.ClaimParams {
	p := &db.ClaimParams{Limit: limit, Except: r.skipped(), Timeout: r.cfg.CycleTimeout}
	if !r.cfg.PriorityStrict {
		p.Oldest = r.order.claims.Add(1)%AgingEvery == 0
	}
	if r.cfg.TenantFair {
		r.order.mu.Lock()
		p.Fair = &db.FairParams{After: r.order.after, Weights: r.cfg.TenantWeights, MaxInFlight: r.cfg.TenantMaxInFlight}
		if time.Since(r.order.tenantsAt) < tenantsFresh {
			p.Fair.Tenants = r.order.tenants
		}
		r.order.mu.Unlock()
	}
	return p
}

// claimed records where a fair claim ended, the tenants it found, and
// whether it held jobs back.
func (r *Relay) claimed(jobs []db.Job, c db.Claimed) {
	if c.Held {
		r.order.held.Store(true)
	}
	if !r.cfg.TenantFair {
		return
	}
	r.order.mu.Lock()
	defer r.order.mu.Unlock()
	switch {
	case c.Tenants != nil:
		r.order.tenants, r.order.tenantsAt = c.Tenants, time.Now()
	case !c.More:
		// The tenants known are running out: the next claim looks again.
		r.order.tenantsAt = time.Time{}
	}
	if len(jobs) > 0 {
		r.order.after = jobs[len(jobs)-1].Tenant.String
	}
}
