package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A validation error carries the field, for callers that name it in their
// own terms (the CLI names the variable bound to it).
func TestConfigErrorNamesTheField(t *testing.T) {
	t.Parallel()
	h := HandlerFunc(func(context.Context, Job) error { return nil })
	for _, tc := range []struct {
		cfg         Config
		field, want string
	}{
		{Config{}, "Handler", "Handler is required"},
		{Config{Handler: h, Concurrency: ConcurrencyMax + 1}, "Concurrency", "Concurrency must be between 1 and 10000"},
		{Config{Handler: h, MaxDeliveries: 1001}, "MaxDeliveries", "MaxDeliveries must be between 1 and 1000"},
		{Config{Handler: h, HandlerTimeout: time.Microsecond}, "HandlerTimeout", "HandlerTimeout must be at least 1ms"},
		{Config{Handler: h, ShutdownTimeout: -2}, "ShutdownTimeout", "ShutdownTimeout must be positive"},
	} {
		err := tc.cfg.Validate()
		var cerr *ConfigError
		require.ErrorAs(t, err, &cerr)
		require.Equal(t, tc.field, cerr.Field)
		require.ErrorContains(t, err, tc.want)
	}
	require.NoError(t, (&Config{Handler: h}).Validate())
	require.Zero(t, (&Config{Handler: h, ShutdownTimeout: -1}).withDefaults().ShutdownTimeout, "-1: no grace")
}
