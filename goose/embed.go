// Package goose holds jobrelay's SQL migrations, embedded in the binary.
//
// The files are plain goose migrations, so the goose CLI runs them too:
//
//	goose -dir goose postgres "$DATABASE_URL" up
//
// The binary runs the same files with `jobrelay migrate up`.
package goose

import "embed"

// FS holds the migrations, named NNNNN_name.sql, at its root.
//
//go:embed *.sql
var FS embed.FS
