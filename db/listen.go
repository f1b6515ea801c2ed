package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Listen subscribes conn to NotifyChannel and returns the connection's
// current schema: notifications whose payload names another schema are not
// for it.
func Listen(ctx context.Context, conn *pgx.Conn) (string, error) {
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return "", fmt.Errorf("listen on %s: %w", NotifyChannel, err)
	}
	var schema *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return "", fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return "", errors.New("read current schema: the search_path names no schema that exists")
	}
	return *schema, nil
}
