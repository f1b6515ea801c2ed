package metrics

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBoundedLabelsKeepTheFirstValues(t *testing.T) {
	t.Parallel()
	b := NewBoundedLabels(2)
	require.Equal(t, "a", b.Value("a"))
	require.Equal(t, "b", b.Value("b"))
	require.Equal(t, OtherLabel, b.Value("c"), "beyond the cap")
	require.Equal(t, "a", b.Value("a"), "a value seen keeps its label")
	require.Equal(t, DefaultTenantLabel, TenantLabel(""))
	require.Equal(t, "-3", PriorityLabel(-3))
}
