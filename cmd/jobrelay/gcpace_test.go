package main

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGCPaceDefaultsUnlessGOGCIsSet runs the binary with and without GOGC
// in its environment: without it the collector runs at gcPercentDefault,
// with it at what GOGC says, as go_gc_gogc_percent reports.
func TestGCPaceDefaultsUnlessGOGCIsSet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gogc string // "" leaves GOGC out of the environment
		want float64
	}{
		{"unset", "", gcPercentDefault},
		{"set", "150", 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pl := newPipeline(t)
			env := append(withoutVar(pl.env, "GOGC"), "METRICS_ADDR=127.0.0.1:0")
			if tc.gogc != "" {
				env = append(env, "GOGC="+tc.gogc)
			}
			p := start(t, t.TempDir(), env, "relay")
			got := scrape(t, "http://"+metricsAddr(t, p)+"/metrics")["go_gc_gogc_percent"]
			require.Equal(t, tc.want, got, "go_gc_gogc_percent with GOGC=%s", strconv.Quote(tc.gogc))
			p.Signal(syscall.SIGTERM)
			require.Zero(t, p.Wait(time.Minute), p.Output())
		})
	}
}
