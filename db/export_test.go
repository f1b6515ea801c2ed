package db

// ReadJobCountsAbove is ReadJobCounts estimating from a table of
// estimateAbove rows, so that tests need no table of millions.
var ReadJobCountsAbove = readJobCounts
