// Package embedtest holds the tests that jobrelay's public packages can be
// used by a program outside this module: no exported identifier has a type
// from internal/, and the examples build a pipeline with public packages
// only.
package embedtest
