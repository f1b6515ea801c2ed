package db

// The claim statements, for the tests of their plans.
var (
	ClaimSQL          = claimSQL
	ClaimOldestSQL    = claimOldestSQL
	FairByPrioritySQL = fairByPrioritySQL
	FairOldestSQL     = fairOldestSQL
	ListTenantsSQL    = listTenantsSQL
	LockTenantsSQL    = lockTenantsSQL
)
