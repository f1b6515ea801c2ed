package db

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsRowError reports whether err is PostgreSQL refusing a statement because
// of the data of a row it touched: a constraint or a trigger the
// application added, a value out of range, a text the server cannot store.
// The same statement may then succeed for the other rows, so a batch is
// worth splitting to isolate the row; retrying it whole would fail forever.
//
// Everything else is not: a lost connection, a timeout, a lock or
// serialization failure, a server shutting down or out of resources, and a
// schema that is not what jobrelay expects (a missing table, column or
// function, a missing privilege), since those fail every row alike and
// retrying later may succeed, rather than failing every job until an
// operator fixes them. A row-level security policy's refusal, also
// insufficient privilege, is about the row. Neither is a client-side
// error, or one from another server.
func IsRowError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code {
	case "42P01", // undefined_table
		"42703", // undefined_column
		"42883", // undefined_function
		"42704", // undefined_object
		"42P02": // undefined_parameter
		return false
	case "42501": // insufficient_privilege
		return strings.Contains(pe.Message, "row-level security")
	}
	switch pe.Code[:2] {
	case "09", // triggered action exception
		"21", // cardinality violation
		"22", // data exception: out of range, invalid text, ...
		"23", // integrity constraint violation
		"27", // triggered data change violation
		"2F", // SQL routine exception
		"38", // external routine exception
		"39", // external routine invocation exception
		"42", // syntax error or access rule violation, e.g. in a trigger
		"44", // WITH CHECK OPTION violation
		"54", // program limit exceeded
		"P0": // PL/pgSQL: RAISE EXCEPTION, ASSERT
		return true
	}
	return false
}
