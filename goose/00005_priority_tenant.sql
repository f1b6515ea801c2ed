-- Priority and tenants (issue 12). Higher priority is reviewed sooner;
-- tenant NULL is the default tenant. Both columns are added without
-- rewriting the table: a constant default is kept in the catalog
-- (PostgreSQL 11 and later), a nullable column without one costs nothing.
--
-- The indexes are partial, over the rows a claim reads. Building them
-- scans the table and blocks writes meanwhile; CONCURRENTLY would not, but
-- PostgreSQL refuses it on a partitioned jobs table (see README, Scaling
-- out), so the migration builds them plainly, IF NOT EXISTS. On a table of
-- millions, build them first without blocking writes (CREATE INDEX
-- CONCURRENTLY with these names and definitions, on each partition if jobs
-- is partitioned), and this migration finds them there.

-- +goose Up
ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS priority smallint NOT NULL DEFAULT 0,  -- higher is reviewed sooner
    ADD COLUMN IF NOT EXISTS tenant   text;                         -- NULL: the default tenant

-- Claims in priority order, oldest first within a level. With every job at
-- priority 0 a scan of it costs what the created_at index's does.
CREATE INDEX IF NOT EXISTS jobs_pending_review_priority_idx
    ON jobs (priority DESC, created_at) WHERE status = 'pending_review';

-- Fair claims (TENANT_FAIR): the tenants with pending work, skipped
-- through one by one, and each tenant's jobs in priority order, or oldest
-- first for the claims that age. The default tenant is ''.
CREATE INDEX IF NOT EXISTS jobs_pending_review_tenant_priority_idx
    ON jobs ((coalesce(tenant, '')), priority DESC, created_at) WHERE status = 'pending_review';
CREATE INDEX IF NOT EXISTS jobs_pending_review_tenant_created_at_idx
    ON jobs ((coalesce(tenant, '')), created_at) WHERE status = 'pending_review';

-- TENANT_MAX_IN_FLIGHT counts a tenant's in_review jobs at claim time. Rows
-- of the default tenant are left out, so that a deployment without tenants
-- does not maintain it at every claim; their count reads the in_review
-- index on enqueued_at.
CREATE INDEX IF NOT EXISTS jobs_in_review_tenant_idx
    ON jobs (tenant) WHERE status = 'in_review' AND tenant IS NOT NULL;

-- +goose Down
DROP INDEX IF EXISTS jobs_in_review_tenant_idx;
DROP INDEX IF EXISTS jobs_pending_review_tenant_created_at_idx;
DROP INDEX IF EXISTS jobs_pending_review_tenant_priority_idx;
DROP INDEX IF EXISTS jobs_pending_review_priority_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS tenant, DROP COLUMN IF EXISTS priority;
