package dashboard

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/stream"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queryCounter counts the queries a pool sends.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type testBundle struct {
	schema  *testenv.Schema
	pool    *pgxpool.Pool // counts its queries in queries
	queries *queryCounter
	stream  string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	b := &testBundle{schema: schema, queries: &queryCounter{}, stream: testenv.Stream(t, rdb)}
	b.pool = schema.TracedPool(t, b.queries)
	return b
}

func (b *testBundle) dashboard(t *testing.T, cfg Config) *Dashboard {
	t.Helper()
	cfg.Stream = b.stream
	d, err := New(b.pool, testenv.NewRedis(t), cfg)
	require.NoError(t, err)
	return d
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(testenv.Context(t), http.MethodGet, path, nil))
	return rec
}

// Issue 14, item 1: opening the dashboard does not load the database more
// than the metrics' snapshot does: any number of views within Refresh cost
// one snapshot's queries, and the chart none.
func TestViewsShareOneSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testenv.Seed(t, b.schema.Pool, 25)
	ctx := testenv.Context(t)

	// What one snapshot costs.
	snap, err := inspect.Take(ctx, b.pool, testenv.NewRedis(t), inspect.Options{Stream: b.stream, Counts: true})
	require.NoError(t, err)
	perSnapshot := b.queries.n.Swap(0)
	require.Positive(t, perSnapshot)
	t.Logf("one snapshot with counts: %d statements", perSnapshot)

	d := b.dashboard(t, Config{Refresh: time.Hour})
	var takes atomic.Int64
	take := d.takeFunc
	d.takeFunc = func(ctx context.Context) (*inspect.Snapshot, error) {
		takes.Add(1)
		return take(ctx)
	}
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			rec := get(t, d, "/ui/")
			if rec.Code != http.StatusOK {
				t.Errorf("GET /ui/: %d %s", rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	for _, path := range []string{"/ui/", "/ui/dead-letters", "/ui/static/style.css"} {
		require.Equal(t, http.StatusOK, get(t, d, path).Code, path)
	}
	require.EqualValues(t, 1, takes.Load(), "one snapshot for every view within Refresh")
	require.Equal(t, perSnapshot, b.queries.n.Load(), "one snapshot's queries")

	// The chart draws on the collector's snapshots: no query of its own.
	d.Observe(snap)
	require.Equal(t, perSnapshot, b.queries.n.Load())

	// Past Refresh, the next view reads again, once.
	d.snaps.invalidate()
	require.Equal(t, http.StatusOK, get(t, d, "/ui/").Code)
	require.EqualValues(t, 2, takes.Load())
	require.Equal(t, 2*perSnapshot, b.queries.n.Load())
}

func TestOverviewShowsTheSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testenv.Seed(t, b.schema.Pool, 1234)
	d := b.dashboard(t, Config{})
	rec := get(t, d, "/ui/")
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	require.Contains(t, body, `data-metric="backlog.pending" data-value="1234">1,234<`)
	require.Contains(t, body, `data-metric="jobs.pending_review" data-value="1234">1,234<`)
	require.Contains(t, body, "not created yet", "the stream does not exist yet")
	require.Contains(t, body, "read-only")
	require.NotContains(t, body, "<form")
	h := rec.Header()
	require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	require.Empty(t, rec.Result().Cookies(), "read-only: no CSRF cookie")

	require.Equal(t, http.StatusMovedPermanently, get(t, d, "/ui").Code)
	require.Equal(t, http.StatusNotFound, get(t, d, "/ui/nothing").Code)
	require.Equal(t, http.StatusNotFound, get(t, d, "/ui/jobs/not-a-uuid").Code)
	require.Equal(t, http.StatusNotFound, get(t, d, "/ui/jobs/6f4ad772-733c-4929-bf9d-fdb047034582").Code)
}

// failJob inserts a job that was dead-lettered: failed, with its dead
// letter.
func (b *testBundle) failJob(t *testing.T) string {
	t.Helper()
	return b.failJobIn(t, b.stream)
}

// failJobIn inserts a job that was published to streamName (a partition)
// and dead-lettered there.
func (b *testBundle) failJobIn(t *testing.T, streamName string) string {
	t.Helper()
	ctx := testenv.Context(t)
	var id string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `INSERT INTO jobs (title, status, attempts, last_error, stream) VALUES ('poison', 'failed', 1, 'exit status 1', $1) RETURNING id::text`,
		streamName).Scan(&id))
	rdb := testenv.NewRedis(t)
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(streamName), Values: map[string]any{
		stream.FieldJobID: id, stream.FieldTitle: "poison", stream.FieldAttempt: "1", stream.FieldError: "exit status 1",
		stream.FieldDeliveries: "5", stream.FieldDeadAt: time.Now().UTC().Format(time.RFC3339Nano), stream.FieldTaskID: "1-0",
	}}).Err())
	return id
}

// Issue 14, item 1: actions are POSTs that need the page's token, from the
// dashboard's own origin, and only with Write.
func TestRetryIsProtected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.failJob(t)
	b.failJob(t)
	srv := httptest.NewServer(b.dashboard(t, Config{Write: true}))
	defer srv.Close()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	res, err := client.Get(srv.URL + "/ui/dead-letters")
	require.NoError(t, err)
	page, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Contains(t, string(page), `data-retry="`+id+`"`)
	require.Contains(t, string(page), "Retry all 2 failed")
	token := regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`).FindStringSubmatch(string(page))
	require.NotNil(t, token)
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == csrfCookie {
			cookie = c
		}
	}
	require.NotNil(t, cookie)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	require.True(t, cookie.HttpOnly)

	post := func(c *http.Client, form url.Values, header map[string]string) int {
		req, err := http.NewRequestWithContext(testenv.Context(t), http.MethodPost, srv.URL+"/ui/retry", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := c.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		return res.StatusCode
	}
	failed := func() int64 {
		c, err := db.CountByStatus(testenv.Context(t), b.schema.Pool)
		require.NoError(t, err)
		return c[db.StatusFailed]
	}
	noJar := &http.Client{CheckRedirect: client.CheckRedirect}
	for name, tc := range map[string]struct {
		client *http.Client
		form   url.Values
		header map[string]string
	}{
		"no token":          {client, url.Values{"job": {id}}, nil},
		"wrong token":       {client, url.Values{"job": {id}, "csrf": {strings.Repeat("0", 64)}}, nil},
		"token, no cookie":  {noJar, url.Values{"job": {id}, "csrf": {token[1]}}, nil},
		"another site":      {client, url.Values{"job": {id}, "csrf": {token[1]}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"a sibling site":    {client, url.Values{"job": {id}, "csrf": {token[1]}}, map[string]string{"Sec-Fetch-Site": "same-site"}},
		"another origin":    {client, url.Values{"job": {id}, "csrf": {token[1]}}, map[string]string{"Origin": "http://evil.example"}},
		"the token as form": {noJar, url.Values{"job": {id}, "csrf": {token[1]}, csrfCookie: {token[1]}}, nil},
	} {
		require.Equal(t, http.StatusForbidden, post(tc.client, tc.form, tc.header), name)
	}
	require.EqualValues(t, 2, failed(), "no forged request changed anything")

	// The page's own form: one job, then all.
	require.Equal(t, http.StatusSeeOther, post(client, url.Values{"job": {id}, "csrf": {token[1]}, "back": {"job"}},
		map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}))
	require.EqualValues(t, 1, failed())
	require.Equal(t, http.StatusNotFound, post(client, url.Values{"job": {id}, "csrf": {token[1]}}, nil), "not failed any more")
	require.Equal(t, http.StatusSeeOther, post(client, url.Values{"csrf": {token[1]}, "back": {"//evil.example/"}}, nil))
	require.Zero(t, failed())
	rdb := testenv.NewRedis(t)
	require.Zero(t, rdb.XLen(testenv.Context(t), stream.DeadLetterKey(b.stream)).Val(), "their dead letters went with them")

	// Read-only, even the right token is refused.
	ro := httptest.NewServer(b.dashboard(t, Config{}))
	defer ro.Close()
	req, err := http.NewRequestWithContext(testenv.Context(t), http.MethodPost, ro.URL+"/ui/retry", strings.NewReader("csrf="+token[1]))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusForbidden, res.StatusCode)
}

func TestRetryReturnsToTheDashboard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.failJob(t)
	d := b.dashboard(t, Config{Write: true})
	for _, tc := range []struct{ job, back, want string }{
		{id, "job", "/ui/jobs/" + id + "?retried=1"},
		{"", "https://evil.example", "/ui/dead-letters?retried=0"},
		{"", "job", "/ui/dead-letters?retried=0"},
	} {
		form := url.Values{"csrf": {d.token}, "back": {tc.back}, "job": {tc.job}}
		req := httptest.NewRequestWithContext(testenv.Context(t), http.MethodPost, "/ui/retry", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: d.token})
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		require.Equal(t, http.StatusSeeOther, rec.Code, tc.back)
		require.Equal(t, tc.want, rec.Header().Get("Location"), tc.back)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.dashboard(t, Config{Username: "ops", Password: "pa:ss"})
	for _, tc := range []struct {
		user, pass string
		set        bool
		want       int
	}{
		{"", "", false, http.StatusUnauthorized},
		{"ops", "pa", true, http.StatusUnauthorized},
		{"op", "pa:ss", true, http.StatusUnauthorized},
		{"ops", "pa:ss", true, http.StatusOK},
	} {
		req := httptest.NewRequestWithContext(testenv.Context(t), http.MethodGet, "/ui/static/app.js", nil)
		if tc.set {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		require.Equal(t, tc.want, rec.Code, "%s:%s", tc.user, tc.pass)
		if tc.want == http.StatusUnauthorized {
			require.Contains(t, rec.Header().Get("WWW-Authenticate"), `Basic realm="jobrelay"`)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Prefix: "ui"}, "Prefix must be a path"},
		{Config{Refresh: -time.Second}, "Refresh must not be negative"},
		{Config{Partitions: -1}, "Partitions must be at least 1"},
		{Config{Window: time.Second}, "Window must be at least 1m"},
		{Config{Password: "x"}, "Password is set without a Username"},
		{Config{Username: "a:b", Password: "x"}, "Username must not contain a colon"},
	} {
		_, err := New(nil, nil, tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestChart(t *testing.T) {
	t.Parallel()
	now := time.Now()
	h := newHistory(WindowDefault)
	for i, c := range []struct{ added, read, pending int64 }{{0, 0, 0}, {100, 90, 10}, {400, 380, 20}, {400, 400, 0}} {
		h.add(&inspect.Snapshot{TakenAt: now.Add(time.Duration(i-3) * 10 * time.Second), Stream: inspect.Stream{Exists: true, EntriesAdded: c.added},
			Groups: []inspect.Group{{Name: "g", EntriesRead: c.read, Pending: c.pending}}})
	}
	h.add(&inspect.Snapshot{TakenAt: now.Add(-time.Second), Stream: inspect.Stream{Exists: true, EntriesAdded: 401}}) // too close: dropped
	c := newChart(h.snapshot(), WindowDefault, now)
	require.Empty(t, c.Empty)
	require.Len(t, c.Series, 2)
	require.Equal(t, "published", c.Series[0].Name)
	require.Equal(t, "0/s", c.Series[0].Last)
	require.Equal(t, "30/s", c.Series[0].Peak) // 300 entries in 10s
	require.Equal(t, "finished by g", c.Series[1].Name)
	require.Equal(t, "4.0/s", c.Series[1].Last) // (400-0) - (380-20) = 40 in 10s
	require.Equal(t, "28/s", c.Series[1].Peak)
	require.Equal(t, []string{"0", "25", "50"}, []string{c.Ticks[0].Label, c.Ticks[1].Label, c.Ticks[2].Label})

	require.Equal(t, "Collecting samples: the chart fills in as the pipeline's state is read.", newChart(nil, WindowDefault, now).Empty)
	require.InDelta(t, 1.0, niceCeil(0.3), 0)
	require.InDelta(t, 50.0, niceCeil(30), 0)
	require.InDelta(t, 200.0, niceCeil(101), 0)
	require.Equal(t, "1,234,567", formatInt(1234567))
	require.Equal(t, "-1", formatInt(-1))
	require.Equal(t, "3m 12s", human(192*time.Second))
	require.Equal(t, "2h", human(2*time.Hour))
	require.Equal(t, "3d 4h", human(76*time.Hour))
}

func TestOverviewShowsTheLongestWaitForAResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, b.stream, "workers", "0").Err())
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: []any{"job_id", "x"}}).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "c1", Streams: []string{b.stream, ">"}, Count: 1}).Err())

	body := get(t, b.dashboard(t, Config{}), "/ui/").Body.String()
	require.Contains(t, body, id+" at c1, 1 delivery")
	require.Contains(t, body, `data-metric="groups.workers.pending" data-value="1"`)
	require.Contains(t, body, `data-metric="groups.workers.consumers" data-value="1"`)
}

// metricsOf reads the page's numbers: data-metric to data-value, and
// data-at-metric to data-at.
func metricsOf(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`data-(?:at-)?metric="([^"]+)" data-(?:value|at)="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if v, ok := out[m[1]]; ok {
			require.Equal(t, v, m[2], "%s shown twice, with two values", m[1])
		}
		out[m[1]] = m[2]
	}
	return out
}

// Issue 14, item 1: with partitions, the overview shows each partition's
// length, each group's lag and pending entries in it, and its dead letters;
// with jobs at more than one priority and tenant, the pending jobs by each.
// Every number is the snapshot's, as status --json shows it.
func TestOverviewShowsPartitionsAndLevels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	_, err := b.schema.Pool.Exec(ctx, `
INSERT INTO jobs (title, priority, tenant, created_at) VALUES
  ('a', 5, 'acme', now() - interval '3 minutes'), ('b', 5, 'acme', now()), ('c', 5, 'acme', now()),
  ('d', 0, NULL, now() - interval '1 hour'), ('e', 0, 'acme', now())`)
	require.NoError(t, err)
	p0, p1 := b.stream+":0", b.stream+":1"
	for _, e := range []string{p0, p0, p0, p1} {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: e, Values: []any{stream.FieldJobID, "x"}}).Err())
	}
	for _, p := range []string{p0, p1} {
		require.NoError(t, rdb.XGroupCreate(ctx, p, "workers", "0").Err())
	}
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "c1", Streams: []string{p0, ">"}, Count: 2}).Err())
	b.failJobIn(t, p1)

	d := b.dashboard(t, Config{Partitions: 3})
	body := get(t, d, "/ui/").Body.String()
	got := metricsOf(t, body)
	snap, err := inspect.Take(ctx, b.pool, rdb, inspect.Options{Stream: b.stream, Partitions: 3, Counts: true})
	require.NoError(t, err)
	require.Len(t, snap.Partitions, 3)

	want := map[string]int64{
		"partitions.0.stream.length": 3, "partitions.0.groups.workers.lag": 1, "partitions.0.groups.workers.pending": 2, "partitions.0.dead_letters": 0,
		"partitions.1.stream.length": 1, "partitions.1.groups.workers.lag": 1, "partitions.1.groups.workers.pending": 0, "partitions.1.dead_letters": 1,
		"partitions.2.stream.length": 0, "partitions.2.dead_letters": 0,
		"stream.length": 4, "dead_letters": 1, "groups.workers.lag": 2, "groups.workers.pending": 2,
		"backlog.by_priority.5.pending": 3, "backlog.by_priority.0.pending": 2,
		"backlog.by_tenant.acme.pending": 4, "backlog.by_tenant.default.pending": 1,
	}
	for metric, n := range want {
		require.Equal(t, strconv.FormatInt(n, 10), got[metric], "%s on the page", metric)
	}
	require.NotContains(t, got, "partitions.2.groups.workers.lag", "no group has read the partition not created yet")
	for i, p := range snap.Partitions {
		require.Equal(t, strconv.FormatInt(p.Stream.Length, 10), got["partitions."+strconv.Itoa(i)+".stream.length"], "the snapshot's")
		require.Contains(t, body, `data-partition="`+p.Stream.Name+`"`)
	}
	for _, l := range snap.Backlog.ByPriority {
		require.Equal(t, l.OldestPendingAt.UTC().Format(time.RFC3339Nano), got["backlog.by_priority."+l.Priority+".oldest_pending_at"])
	}
	for _, l := range snap.Backlog.ByTenant {
		require.Equal(t, strconv.FormatInt(l.Pending, 10), got["backlog.by_tenant."+l.Tenant+".pending"])
		require.Equal(t, l.OldestPendingAt.UTC().Format(time.RFC3339Nano), got["backlog.by_tenant."+l.Tenant+".oldest_pending_at"])
	}
	require.Contains(t, body, "Pending by priority")
	require.Contains(t, body, "Pending by tenant")

	// One partition, one priority, one tenant: none of those tables.
	one := setup(t)
	testenv.Seed(t, one.schema.Pool, 3)
	body = get(t, one.dashboard(t, Config{}), "/ui/").Body.String()
	require.NotContains(t, body, "data-partition=")
	require.NotContains(t, body, "Pending by priority")
	require.NotContains(t, body, "Pending by tenant")
}

// Issue 14, item 1: the dead letters page lists every partition's dead
// letters, a job's page shows the dead letter in its partition, and
// retrying the job removes it from there.
func TestRetryRemovesAPartitionsDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	rdb := testenv.NewRedis(t)
	inP2 := b.failJobIn(t, b.stream+":2")
	inP0 := b.failJobIn(t, b.stream+":0")
	old := b.failJob(t) // dead-lettered before the pipeline had partitions
	d := b.dashboard(t, Config{Partitions: 3, Write: true})

	body := get(t, d, "/ui/dead-letters").Body.String()
	for _, id := range []string{inP2, inP0, old} {
		require.Contains(t, body, `data-retry="`+id+`"`)
	}
	require.Contains(t, body, "Retry all 3 failed")
	require.Contains(t, body, stream.DeadLetterKey(b.stream+":0")+" … "+stream.DeadLetterKey(b.stream+":2"))
	require.Equal(t, "3", metricsOf(t, body)["dead_letters"],
		"status counts the partitions' dead letters and the one from before partitions, as the page lists them")

	job := get(t, d, "/ui/jobs/"+inP2).Body.String()
	require.Contains(t, job, "exit status 1", "the job's dead letter, in its partition's dead-letter stream")
	require.Contains(t, job, `data-retry="`+inP2+`"`)

	post := func(jobID string) *httptest.ResponseRecorder {
		form := url.Values{"csrf": {d.token}, "job": {jobID}, "back": {"job"}}
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/ui/retry", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: d.token})
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		return rec
	}
	require.Equal(t, http.StatusSeeOther, post(inP2).Code)
	require.Zero(t, rdb.XLen(ctx, stream.DeadLetterKey(b.stream+":2")).Val(), "its dead letter went with it")
	require.EqualValues(t, 1, rdb.XLen(ctx, stream.DeadLetterKey(b.stream+":0")).Val(), "the other job's stays")
	row, err := db.GetJob(ctx, b.schema.Pool, inP2)
	require.NoError(t, err)
	require.Equal(t, db.StatusPendingReview, row.Status)
	require.NotContains(t, get(t, d, "/ui/jobs/"+inP2).Body.String(), "exit status 1")

	require.Equal(t, http.StatusSeeOther, post("").Code, "retry all")
	require.Zero(t, rdb.XLen(ctx, stream.DeadLetterKey(b.stream+":0")).Val())
	require.Zero(t, rdb.XLen(ctx, stream.DeadLetterKey(b.stream)).Val(), "and those from before partitions")
	require.Contains(t, get(t, d, "/ui/dead-letters").Body.String(), "No dead letters")
}
