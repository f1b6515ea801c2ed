package relay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A validation error carries the field, for callers that name it in their
// own terms (the CLI names the variable bound to it).
func TestConfigErrorNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg         Config
		field, want string
	}{
		{Config{BatchSize: 9000}, "BatchSize", "BatchSize must be between 1 and 5000"},
		{Config{Workers: 17}, "Workers", "Workers must be between 1 and 16"},
		{Config{PollInterval: 60 * time.Nanosecond}, "PollInterval", "PollInterval must be at least 10ms"},
		{Config{CycleTimeout: time.Millisecond}, "CycleTimeout", "CycleTimeout must be at least 10ms"},
		{Config{DedupTTL: time.Second}, "DedupTTL", "DedupTTL must be at least CycleTimeout (30s)"},
	} {
		err := tc.cfg.Validate()
		var cerr *ConfigError
		require.ErrorAs(t, err, &cerr)
		require.Equal(t, tc.field, cerr.Field)
		require.ErrorContains(t, err, tc.want)
	}
	require.NoError(t, (&Config{}).Validate())
}
