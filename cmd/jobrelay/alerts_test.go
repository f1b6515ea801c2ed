package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// promtool finds promtool: $PROMTOOL, then PATH, then bin/ (where `make
// promtool` installs it). The alert tests fail without it rather than
// skip: `make test` installs it, and so does CI.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p, err := filepath.Abs("../../bin/promtool")
	require.NoError(t, err)
	_, err = os.Stat(p)
	require.NoError(t, err, "promtool is needed to test deploy/alerts.yml: `make promtool` installs it in bin/ (make test does it first)")
	return p
}

// alertRules is what the test reads of deploy/alerts.yml.
type alertRules struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertTests is what the test reads of deploy/alerts_test.yml.
type alertTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name        string `yaml:"name"`
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v), path)
}

// Issue 14, item 3: the alerts README links are valid rules, and promtool
// shows each one firing in its scenario and quiet in a healthy pipeline;
// they and the scenarios name only metrics a jobrelay process exports.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "../../deploy/alerts.yml"}, {"test", "rules", "../../deploy/alerts_test.yml"}} {
		out, err := exec.CommandContext(ctxT(t), tool, args...).CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		require.Contains(t, string(out), "SUCCESS", "promtool %s", strings.Join(args, " "))
	}

	var rules alertRules
	readYAML(t, "../../deploy/alerts.yml", &rules)
	var tests alertTests
	readYAML(t, "../../deploy/alerts_test.yml", &tests)
	require.Equal(t, []string{"alerts.yml"}, tests.RuleFiles)

	// Every alert fires in a scenario and is checked quiet in another: a
	// rule that cannot fire fails here.
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var alerts, exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "alerts.yml has alerts only")
			alerts = append(alerts, r.Alert)
			exprs = append(exprs, r.Expr)
			require.True(t, fires[r.Alert], "no scenario shows %s firing", r.Alert)
			require.True(t, quiet[r.Alert], "no scenario shows %s quiet", r.Alert)
		}
	}
	for name := range fires {
		require.Contains(t, alerts, name, "alerts_test.yml tests an alert alerts.yml does not have")
	}
	for _, want := range []string{"JobReviewRelayDown", "JobReviewBacklogOld", "JobReviewConsumersBehind",
		"JobReviewStuckDelivery", "JobReviewDeadLetters"} {
		require.Contains(t, alerts, want)
	}

	// The rules and the scenarios use the names a running process
	// exports, not names that would make the rules quiet forever.
	exported := exportedMetrics(t)
	nameRe := regexp.MustCompile(`jobrelay_[a-z_]+`)
	for _, expr := range exprs {
		for _, name := range nameRe.FindAllString(expr, -1) {
			require.True(t, exported[name], "alerts.yml: %s is not a metric jobrelay exports", name)
		}
	}
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			name, _, _ := strings.Cut(s.Series, "{")
			if name != "up" {
				require.True(t, exported[name], "alerts_test.yml %q: %s is not a metric jobrelay exports", tc.Name, name)
			}
		}
	}
}

// exportedMetrics runs `jobrelay run` and returns the names of the metrics
// it exports once its pipeline gauges have a group to show.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	pl := newPipeline(t)
	rdb := testenv.NewRedis(t)
	// The group exists before the first snapshot, so that it has the
	// group's gauges.
	require.NoError(t, rdb.XGroupCreateMkStream(ctxT(t), pl.stream, consumer.GroupDefault, "0").Err())
	p := start(t, t.TempDir(), append(pl.env, "METRICS_ADDR=127.0.0.1:0"), "run")
	addr := metricsAddr(t, p)
	names := map[string]bool{}
	require.Eventually(t, func() bool {
		clear(names)
		for series := range scrape(t, "http://"+addr+"/metrics") {
			name, _, _ := strings.Cut(series, "{")
			names[name] = true
		}
		return names["jobrelay_stream_group_lag"]
	}, time.Minute, 10*time.Millisecond)
	return names
}
