package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// cyclesRun counts every cycle, whatever its result.
func cyclesRun(t *testing.T, r *Relay) float64 {
	t.Helper()
	total := 0.0
	for _, res := range []string{"published", "empty", "error"} {
		total += counterValue(t, r.cfg.Metrics.Cycles.WithLabelValues(res))
	}
	return total
}
