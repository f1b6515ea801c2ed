package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// The dashboard's browser tests run the built binary against a real
// pipeline and look at /ui in headless Chromium (testenv.NewBrowser).

// failedPipeline runs `jobrelay run` until the jobs titled "poison …"
// are dead-lettered and the others reviewed, then stops it. The review
// service the handler stands for is down while the file it returns exists.
// extra settings (such as STREAM_PARTITIONS=3) are the pipeline's.
func failedPipeline(t *testing.T, poison, fine int, extra ...string) (pl *pipeline, dir, down string) {
	t.Helper()
	pl = newPipeline(t)
	pl.env = append(pl.env, extra...)
	dir = t.TempDir()
	down = filepath.Join(dir, "review-service-down")
	require.NoError(t, os.WriteFile(down, nil, 0o600))
	p := start(t, dir, append(pipelineEnv(pl, down), "METRICS_ADDR="), "run")
	for i := range poison {
		_, err := pl.schema.Pool.Exec(ctxT(t), `INSERT INTO jobs (title, company, site) VALUES ($1, 'Initech', 'indeed')`, fmt.Sprintf("poison %d", i+1))
		require.NoError(t, err)
	}
	for i := range fine {
		_, err := pl.schema.Pool.Exec(ctxT(t), `INSERT INTO jobs (title, company, site) VALUES ($1, 'Acme', 'linkedin')`, fmt.Sprintf("fine %d", i+1))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		c := counts(t, pl)
		return c[db.StatusFailed] == int64(poison) && c[db.StatusReviewed] == int64(fine)
	}, time.Minute, 10*time.Millisecond)
	p.Signal(syscall.SIGTERM)
	require.Zero(t, p.Wait(time.Minute))
	return pl, dir, down
}

// pipelineEnv is the environment of the pipeline's processes: one delivery
// before a job is dead-lettered, a handler that fails the poison jobs while
// the review service is down.
func pipelineEnv(pl *pipeline, down string) []string {
	return append(append([]string{}, pl.env...), "MAX_DELIVERIES=1", "RECLAIM_IDLE=100ms",
		"HANDLER=exec:if grep -q poison; then test ! -e "+down+"; fi")
}

// startDashboard starts `jobrelay consume` (a consumer, no relay: pending
// jobs stay pending) with its metrics listener on a free port, and returns
// the process and the dashboard's URL.
func startDashboard(t *testing.T, dir string, env []string) (*proc, string) {
	t.Helper()
	p := start(t, dir, append(env, "METRICS_ADDR=127.0.0.1:0"), "consume")
	addr := listenerAddr(t, p)
	// A consumer joins its group's list with its first entry: the group
	// looks the same before and after it starts. It starts once per
	// partition.
	partitions := 1
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "STREAM_PARTITIONS="); ok {
			var err error
			partitions, err = strconv.Atoi(v)
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool { return len(p.Logged("consumer: started")) == partitions }, time.Minute, 10*time.Millisecond)
	return p, "http://" + addr + "/ui"
}

// pageMetric is a number the page shows: its name as status --json's keys
// (dots between them), its value unformatted, and the text shown.
type pageMetric struct {
	Metric string `json:"metric"`
	Value  string `json:"value"`
	Text   string `json:"text"`
}

// countActionsJS counts what could act: forms and buttons.
const countActionsJS = `document.querySelectorAll('form, button').length`

// see runs a browser action that returns a value.
func see[T any](t *testing.T, browser context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(browser, a)
	require.NoError(t, err)
	return v
}

const readMetricsJS = `Array.from(document.querySelectorAll('[data-metric]')).map(e => ({metric: e.dataset.metric, value: e.dataset.value, text: e.innerText.trim()}))`

// statusValue finds a page metric in the output of status --json:
// "jobs.reviewed", "backlog.pending", "groups.<name>.lag",
// "groups.<name>.consumers" (their number), "partitions.<i>.<metric>"
// (of the partition's stream, groups and dead letters),
// "backlog.by_priority.<priority>.pending", "backlog.by_tenant.<tenant>.pending".
func statusValue(t *testing.T, status map[string]any, metric string) int64 {
	t.Helper()
	v, ok := statusField(t, status, metric).(float64)
	require.True(t, ok, "status --json's %s is a number", metric)
	return int64(v)
}

// statusField finds a page metric in the output of status --json (see
// statusValue), as decoded.
func statusField(t *testing.T, status map[string]any, metric string) any {
	t.Helper()
	parts := strings.Split(metric, ".")
	if parts[0] == "partitions" && len(parts) > 2 {
		i, err := strconv.Atoi(parts[1])
		require.NoError(t, err, metric)
		list, ok := status["partitions"].([]any)
		require.True(t, ok && i < len(list), "status --json has no partition %d", i)
		return statusField(t, list[i].(map[string]any), strings.Join(parts[2:], "."))
	}
	if len(parts) == 4 && parts[0] == "backlog" && (parts[1] == "by_priority" || parts[1] == "by_tenant") {
		key := map[string]string{"by_priority": "priority", "by_tenant": "tenant"}[parts[1]]
		for _, l := range status["backlog"].(map[string]any)[parts[1]].([]any) {
			if level := l.(map[string]any); level[key] == parts[2] {
				return level[parts[3]]
			}
		}
		t.Fatalf("status --json has no %s %q", key, parts[2])
	}
	if parts[0] == "groups" {
		name, field := strings.Join(parts[1:len(parts)-1], "."), parts[len(parts)-1]
		for _, g := range status["groups"].([]any) {
			grp := g.(map[string]any)
			if grp["name"] != name {
				continue
			}
			if field == "consumers" {
				return float64(len(grp["consumers"].([]any)))
			}
			return grp[field]
		}
		t.Fatalf("status --json has no group %q", name)
	}
	var v any = status
	for _, p := range parts {
		m, ok := v.(map[string]any)
		require.True(t, ok, "status --json has no %s", metric)
		v, ok = m[p]
		require.True(t, ok, "status --json has no %s", metric)
	}
	return v
}

func statusJSON(t *testing.T, pl *pipeline) map[string]any {
	t.Helper()
	cli := map[string]string{"DATABASE_URL": pl.schema.URL, "REDIS_URL": testenv.RedisURL(), "JOB_REVIEW_QUEUE_NAME": pl.stream}
	for _, kv := range pl.env {
		if v, ok := strings.CutPrefix(kv, "STREAM_PARTITIONS="); ok {
			cli["STREAM_PARTITIONS"] = v
		}
	}
	code, stdout, stderr := runInProcess(t, cli, "status", "--json")
	require.Zero(t, code, stderr)
	var status map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &status))
	return status
}

// Issue 14, item 2: the numbers on the page are those of status --json;
// read-only, the page shows no action and a forged POST is refused.
func TestDashboardShowsWhatStatusShows(t *testing.T) {
	t.Parallel()
	pl, dir, down := failedPipeline(t, 3, 2)
	ctx := ctxT(t)
	// A backlog that stays: no relay runs from here on.
	_, err := pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title, company) VALUES ('waiting 1', 'Acme'), ('waiting 2', 'Acme'), ('waiting 3', NULL), ('waiting 4', 'Hooli')`)
	require.NoError(t, err)
	_, err = pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title, status) VALUES ('old', 'archived')`)
	require.NoError(t, err)
	p, ui := startDashboard(t, dir, pipelineEnv(pl, down))

	browser := testenv.NewBrowser(t)
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/"), chromedp.WaitVisible(chromedp.CSS(".tiles"))))
	metrics := see(t, browser, chromedp.Evaluate[[]pageMetric](readMetricsJS))
	shot := see(t, browser, chromedp.FullScreenshot(100))
	require.NoError(t, os.WriteFile(filepath.Join(t.TempDir(), "dashboard.png"), shot, 0o600))
	status := statusJSON(t, pl)

	seen := map[string]bool{}
	for _, m := range metrics {
		want := statusValue(t, status, m.Metric)
		require.Equal(t, strconv.FormatInt(want, 10), m.Value, "%s on the page", m.Metric)
		require.Equal(t, m.Value, strings.ReplaceAll(m.Text, ",", ""), "%s: the number shown is its value", m.Metric)
		seen[m.Metric] = true
	}
	for _, m := range []string{"jobs.pending_review", "jobs.in_review", "jobs.reviewed", "jobs.failed", "jobs.archived",
		"backlog.pending", "backlog.in_review", "stream.length", "stream.entries_added", "dead_letters",
		"groups.job_review_workers.lag", "groups.job_review_workers.pending", "groups.job_review_workers.consumers"} {
		require.True(t, seen[m], "the page shows %s", m)
	}
	require.EqualValues(t, 4, statusValue(t, status, "backlog.pending"))
	require.EqualValues(t, 3, statusValue(t, status, "dead_letters"))

	// The dead letters, and a job's life; no action anywhere.
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/dead-letters"), chromedp.WaitVisible(chromedp.CSS("table.dead"))))
	deadJobs := see(t, browser, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('tr[data-job]')).map(e => e.dataset.job)`))
	require.Len(t, deadJobs, 3)
	deadMetrics := see(t, browser, chromedp.Evaluate[[]pageMetric](readMetricsJS))
	require.Len(t, deadMetrics, 1)
	require.Equal(t, pageMetric{"dead_letters", "3", "3"}, deadMetrics[0])
	require.Zero(t, see(t, browser, chromedp.Evaluate[int](countActionsJS)), "read-only: no action is shown")
	_, err = chromedp.RunResponse(browser, chromedp.Click(chromedp.CSS(`tr[data-job="`+deadJobs[0]+`"] a`)))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(".jobhead"))))
	require.Regexp(t, `^poison \d$`, see(t, browser, chromedp.Text(chromedp.CSS("h1"))))
	require.Equal(t, db.StatusFailed, see(t, browser, chromedp.AttributeValue(chromedp.CSS("[data-job-status]"), "data-job-status")).Value)
	require.Contains(t, see(t, browser, chromedp.Text(chromedp.CSS("table.dead tbody"))), "exit status 1", "the dead letter's error")
	require.Zero(t, see(t, browser, chromedp.Evaluate[int](countActionsJS)))

	// A forged POST is refused: the dashboard is read-only.
	res, err := http.PostForm(ui+"/retry", url.Values{"job": {deadJobs[0]}})
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.Equal(t, int64(3), counts(t, pl)[db.StatusFailed], "nothing changed")
	require.Empty(t, p.Logged("dashboard: failed jobs sent back to pending_review"))
}

// Issue 14, item 2: with UI_WRITE=true the retry button sends a failed job
// back to pending_review, and it ends reviewed; a POST forged by another
// site is refused.
func TestDashboardRetriesAFailedJob(t *testing.T) {
	t.Parallel()
	pl, dir, down := failedPipeline(t, 1, 1)
	ctx := ctxT(t)
	var jobID string
	require.NoError(t, pl.schema.Pool.QueryRow(ctx, `SELECT id::text FROM jobs WHERE status = 'failed'`).Scan(&jobID))
	require.NoError(t, os.Remove(down)) // the review service is back
	_, ui := startDashboard(t, dir, append(pipelineEnv(pl, down), "UI_WRITE=true"))
	browser := testenv.NewBrowser(t)

	// Another site's page that posts to the dashboard: refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id="f" method="post" action="%s/retry"><input name="job" value="%s"><input name="csrf" value="guess"></form>
<script>document.getElementById('f').submit()</script>`, ui, jobID)
	}))
	defer evil.Close()
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.CSS(".errorpage"))))
	require.Equal(t, "403", see(t, browser, chromedp.Text(chromedp.CSS(".errorpage .code"))))
	require.Equal(t, int64(1), counts(t, pl)[db.StatusFailed], "the forged POST changed nothing")

	// The dashboard's own button.
	button := chromedp.CSS(`button[data-retry="` + jobID + `"]`)
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/dead-letters"), chromedp.WaitVisible(button)))
	_, err := chromedp.RunResponse(browser, chromedp.Click(button))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(".flash.ok"))))
	require.Contains(t, see(t, browser, chromedp.Text(chromedp.CSS(".flash.ok"))), "1 failed job sent back to pending_review")
	require.Empty(t, see(t, browser, chromedp.Evaluate[string](`location.search`)),
		"the page's script ran (the CSP lets it) and dropped the outcome from the address, so a refresh does not repeat it")
	c := counts(t, pl)
	require.Equal(t, int64(1), c[db.StatusPendingReview], "back to pending_review (no relay runs yet)")
	require.Zero(t, c[db.StatusFailed])
	rdb := testenv.NewRedis(t)
	require.Zero(t, rdb.XLen(ctx, "{"+pl.stream+"}:dead").Val(), "its dead letter went with it")

	// A relay publishes it again, and the consumer reviews it.
	code, out := runBinary(t, dir, pl.env, "relay", "--once")
	require.Zero(t, code, out)
	require.Eventually(t, func() bool { return counts(t, pl)[db.StatusReviewed] == 2 }, time.Minute, 10*time.Millisecond)
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/jobs/"+jobID), chromedp.WaitVisible(chromedp.CSS(".jobhead"))))
	require.Equal(t, db.StatusReviewed, see(t, browser, chromedp.AttributeValue(chromedp.CSS("[data-job-status]"), "data-job-status")).Value)
	require.Zero(t, see(t, browser, chromedp.Evaluate[int](`document.querySelectorAll('button[data-retry]').length`)),
		"a reviewed job has nothing to retry")
}

// Issue 14, items 1-2: with UI_AUTH, a request without the password gets
// 401, and the password is never logged.
func TestDashboardAuth(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	dir := t.TempDir()
	const password = "s3cret-Pa55word"
	p, ui := startDashboardOnly(t, pl, dir, "UI_AUTH=ops:"+password)

	get := func(user, pass string) int {
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, ui+"/", nil)
		require.NoError(t, err)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		if res.StatusCode == http.StatusUnauthorized {
			require.Contains(t, res.Header.Get("WWW-Authenticate"), "Basic")
		}
		return res.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, get("", ""))
	require.Equal(t, http.StatusUnauthorized, get("ops", "wrong"))
	require.Equal(t, http.StatusUnauthorized, get("other", password))
	require.Equal(t, http.StatusOK, get("ops", password))

	// In the browser, unauthenticated, then with the credentials.
	browser := testenv.NewBrowser(t)
	// Headless, the browser cannot ask for the password: it gives up on the
	// 401 and its challenge.
	_, err := chromedp.Run(browser, chromedp.NavigateResponse(ui+"/"))
	require.ErrorContains(t, err, "ERR_INVALID_AUTH_CREDENTIALS")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+password))
	_, err = chromedp.Call(browser, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(browser, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
	require.NoError(t, err)
	res := see(t, browser, chromedp.NavigateResponse(ui+"/"))
	require.EqualValues(t, http.StatusOK, res.Status)
	require.NoError(t, chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(".tiles"))))
	require.Equal(t, 6, see(t, browser, chromedp.Evaluate[int](`document.querySelectorAll('.tile').length`)))

	require.NotContains(t, p.Output(), password, "the password is never logged")
	line := p.Logged("jobrelay: serving /metrics, /healthz, /readyz and the dashboard at /ui")[0]
	require.Equal(t, true, line["ui_auth"])
	require.Equal(t, false, line["ui_write"])
}

// startDashboardOnly starts a consumer whose dashboard serves an empty
// pipeline, with extra settings.
// listenerAddr waits for p's metrics listener and returns its address.
func listenerAddr(t *testing.T, p *proc) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		lines := p.Logged("jobrelay: serving /metrics, /healthz, /readyz and the dashboard at /ui")
		if len(lines) == 1 {
			addr, _ = lines[0]["addr"].(string)
		}
		return addr != ""
	}, time.Minute, 10*time.Millisecond, "the listener starts: %s", p.Output())
	return addr
}

func startDashboardOnly(t *testing.T, pl *pipeline, dir string, extra ...string) (*proc, string) {
	t.Helper()
	p := start(t, dir, append(append(append([]string{}, pl.env...), "METRICS_ADDR=127.0.0.1:0"), extra...), "consume")
	addr := listenerAddr(t, p)
	return p, "http://" + addr + "/ui"
}

// A bad UI_AUTH is refused naming the variable, its password hidden.
func TestUIAuthIsCheckedAndHidden(t *testing.T) {
	t.Parallel()
	for value, shown := range map[string]string{
		"Secret-NoColon1": `"xxxxx"`,
		"ops:":            `"ops:xxxxx"`,
		":Secret-Pass2":   `":xxxxx"`,
	} {
		code, _, stderr := runInProcess(t, map[string]string{"UI_AUTH": value}, "consume")
		require.Equal(t, 2, code, stderr)
		require.Contains(t, stderr, "UI_AUTH: must be user:password, both not empty, got "+shown)
		require.NotContains(t, stderr, "Secret-")
	}
	code, _, stderr := runInProcess(t, map[string]string{"UI_WRITE": "yes please"}, "relay")
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, "UI_WRITE: must be true or false")
}

// readTimesJS reads the times the page counts ages from.
const readTimesJS = `Array.from(document.querySelectorAll('[data-at-metric]')).map(e => ({metric: e.dataset.atMetric, value: e.dataset.at, text: e.innerText.trim()}))`

// Issue 14, item 1: with STREAM_PARTITIONS=3 and jobs at two priorities
// and two tenants, the page shows each partition's length, lag, pending
// entries and dead letters, and the pending jobs by priority and tenant,
// as status --json does; retrying a failed job removes its dead letter
// from its partition's dead-letter stream, and it ends reviewed.
func TestDashboardShowsPartitionsAndLevels(t *testing.T) {
	t.Parallel()
	pl, dir, down := failedPipeline(t, 3, 3, "STREAM_PARTITIONS=3")
	ctx := ctxT(t)
	// A backlog that stays (no relay runs from here on), at two priorities
	// and two tenants.
	_, err := pl.schema.Pool.Exec(ctx, `INSERT INTO jobs (title, priority, tenant, created_at) VALUES
  ('urgent 1', 10, 'acme', now() - interval '2 minutes'), ('urgent 2', 10, 'acme', now()),
  ('later 1', 0, NULL, now() - interval '1 hour'), ('later 2', 0, 'acme', now()), ('later 3', 0, NULL, now())`)
	require.NoError(t, err)
	var jobID, jobStream string
	require.NoError(t, pl.schema.Pool.QueryRow(ctx, `SELECT id::text, stream FROM jobs WHERE status = 'failed' ORDER BY title LIMIT 1`).Scan(&jobID, &jobStream))
	require.Regexp(t, `^`+pl.stream+`:[0-2]$`, jobStream, "published to a partition")
	rdb := testenv.NewRedis(t)
	deadKey := "{" + jobStream + "}:dead"
	deadIn := func() int64 { return rdb.XLen(ctx, deadKey).Val() }
	require.Positive(t, deadIn(), "dead-lettered in its partition's dead-letter stream")
	before := deadIn()
	require.NoError(t, os.Remove(down)) // the review service is back
	_, ui := startDashboard(t, dir, append(pipelineEnv(pl, down), "UI_WRITE=true"))

	browser := testenv.NewBrowser(t)
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/"), chromedp.WaitVisible(chromedp.CSS(".tiles"))))
	require.Equal(t, 3, see(t, browser, chromedp.Evaluate[int](`document.querySelectorAll('table.partitions tr[data-partition]').length`)),
		"a row per partition")
	metrics := see(t, browser, chromedp.Evaluate[[]pageMetric](readMetricsJS))
	times := see(t, browser, chromedp.Evaluate[[]pageMetric](readTimesJS))
	status := statusJSON(t, pl)
	require.Len(t, status["partitions"], 3)

	seen := map[string]bool{}
	for _, m := range metrics {
		want := statusValue(t, status, m.Metric)
		require.Equal(t, strconv.FormatInt(want, 10), m.Value, "%s on the page", m.Metric)
		require.Equal(t, m.Value, strings.ReplaceAll(m.Text, ",", ""), "%s: the number shown is its value", m.Metric)
		seen[m.Metric] = true
	}
	for i := range 3 {
		p := "partitions." + strconv.Itoa(i)
		for _, m := range []string{".stream.length", ".dead_letters", ".groups.job_review_workers.lag", ".groups.job_review_workers.pending"} {
			require.True(t, seen[p+m], "the page shows %s", p+m)
		}
	}
	for _, m := range []string{"backlog.by_priority.10.pending", "backlog.by_priority.0.pending", "backlog.by_tenant.acme.pending",
		"backlog.by_tenant.default.pending", "dead_letters", "stream.length"} {
		require.True(t, seen[m], "the page shows %s", m)
	}
	require.EqualValues(t, 2, statusValue(t, status, "backlog.by_priority.10.pending"))
	require.EqualValues(t, 3, statusValue(t, status, "backlog.by_tenant.acme.pending"))
	require.EqualValues(t, 3, statusValue(t, status, "dead_letters"))
	require.Len(t, times, 4, "the oldest pending job of each level")
	for _, m := range times {
		shown, err := time.Parse(time.RFC3339Nano, m.Value)
		require.NoError(t, err)
		want, err := time.Parse(time.RFC3339Nano, statusField(t, status, m.Metric).(string))
		require.NoError(t, err)
		require.True(t, want.Equal(shown), "%s: %s on the page, %s in status", m.Metric, shown, want)
		require.True(t, strings.HasPrefix(m.Text, "oldest "), m.Text)
	}

	// The dead letters page lists the partitions' dead letters; the job's
	// page shows its own, and its button retries it.
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/dead-letters"), chromedp.WaitVisible(chromedp.CSS("table.dead"))))
	require.Len(t, see(t, browser, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('tr[data-job]')).map(e => e.dataset.job)`)), 3)
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/jobs/"+jobID), chromedp.WaitVisible(chromedp.CSS(".jobhead"))))
	require.Contains(t, see(t, browser, chromedp.Text(chromedp.CSS("table.dead tbody"))), "exit status 1", "the dead letter in its partition")
	button := chromedp.CSS(`button[data-retry="` + jobID + `"]`)
	_, err = chromedp.RunResponse(browser, chromedp.Click(button))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(".flash.ok"))))
	require.Equal(t, db.StatusPendingReview, see(t, browser, chromedp.AttributeValue(chromedp.CSS("[data-job-status]"), "data-job-status")).Value)
	require.Equal(t, before-1, deadIn(), "its dead letter went from its partition's dead-letter stream")
	require.Equal(t, int64(2), counts(t, pl)[db.StatusFailed])

	// A relay publishes it again, and the consumer reviews it.
	code, out := runBinary(t, dir, pl.env, "relay", "--once")
	require.Zero(t, code, out)
	require.Eventually(t, func() bool {
		var st string
		require.NoError(t, pl.schema.Pool.QueryRow(ctx, `SELECT status FROM jobs WHERE id = $1`, jobID).Scan(&st))
		return st == db.StatusReviewed
	}, time.Minute, 10*time.Millisecond)
	require.NoError(t, chromedp.Do(browser, chromedp.Navigate(ui+"/jobs/"+jobID), chromedp.WaitVisible(chromedp.CSS(".jobhead"))))
	require.Equal(t, db.StatusReviewed, see(t, browser, chromedp.AttributeValue(chromedp.CSS("[data-job-status]"), "data-job-status")).Value)
}
