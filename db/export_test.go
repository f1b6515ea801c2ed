package db

// ReadJobCountsAbove is ReadJobCounts estimating from a table of
// estimateAbove rows, so that tests need no table of millions.
var ReadJobCountsAbove = readJobCounts

// The claim statements, for the tests of their plans.
var (
	ClaimSQL          = claimSQL
	ClaimOldestSQL    = claimOldestSQL
	FairByPrioritySQL = fairByPrioritySQL
	FairOldestSQL     = fairOldestSQL
	ListTenantsSQL    = listTenantsSQL
	LockTenantsSQL    = lockTenantsSQL
)
