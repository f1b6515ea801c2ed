// Package jobrelay holds the SQL migrations of jobrelay's schema, embedded in
// the binary. The relay, the consumer and the database access live in the
// packages relay, consumer and db; the binary is cmd/jobrelay.
//
// The migrations are plain goose files in the goose folder, so the goose CLI
// runs them too:
//
//	goose -dir goose postgres "$DATABASE_URL" up
//
// The embed lives here, not in the goose folder, because goose reads every
// .go file in that folder as a Go migration: `goose -dir goose validate`
// must pass.
package jobrelay

import (
	"embed"
	"io/fs"
)

//go:embed goose/*.sql
var migrations embed.FS

// Migrations returns the migrations, named NNNNN_name.sql, at the root of
// the file system.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "goose")
	if err != nil {
		panic(err) // "goose" is a valid path: fs.Sub cannot fail on it
	}
	return sub
}
