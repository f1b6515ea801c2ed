package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// reviewService is an HTTP review service that can be taken down: it
// answers 503, hangs until the caller gives up, or is not listening at all
// (connection refused), until it comes back.
type reviewService struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	down     string                 // "", "503", "hang" or "refused"
	answer   map[string]int         // job ID → status when up (default 204)
	statuses map[string]map[int]int // job ID → status → times answered
}

func newReviewService(t *testing.T) *reviewService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &reviewService{t: t, addr: ln.Addr().String(), answer: map[string]int{},
		statuses: map[string]map[int]int{}}
	s.serve(ln)
	t.Cleanup(func() {
		s.mu.Lock()
		srv := s.srv
		s.mu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
	})
	return s
}

func (s *reviewService) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

func (s *reviewService) URL() string { return "http://" + s.addr + "/review" }

// setDown takes the service down the given way, or brings it back ("").
func (s *reviewService) setDown(how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case how == "refused" && s.srv != nil:
		require.NoError(s.t, s.srv.Close())
		s.srv = nil
	case how != "refused" && s.srv == nil:
		ln, err := net.Listen("tcp", s.addr) // the same port again
		require.NoError(s.t, err)
		s.serve(ln)
	}
	s.down = how
}

func (s *reviewService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var job Job
	_ = json.NewDecoder(r.Body).Decode(&job)
	s.mu.Lock()
	down := s.down
	status := s.answer[job.ID]
	s.mu.Unlock()
	switch {
	case down == "503":
		status = http.StatusServiceUnavailable
	case down == "hang":
		<-r.Context().Done()
		return
	case status == 0:
		status = http.StatusNoContent
	}
	s.mu.Lock()
	if s.statuses[job.ID] == nil {
		s.statuses[job.ID] = map[int]int{}
	}
	s.statuses[job.ID][status]++
	s.mu.Unlock()
	w.WriteHeader(status)
}

func (s *reviewService) answered(id string, status int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statuses[id][status]
}

// TestAnOutageOfTheReviewServiceDeadLettersNothing plays, scaled down, a
// review service down for 20 minutes with the defaults (RECLAIM_IDLE 1m,
// MAX_DELIVERIES 5, HANDLER_TIMEOUT 5m): here RECLAIM_IDLE is 100ms,
// MaxDeliveries 3 and the outage 2s. No job may be dead-lettered, every
// job must be reviewed once the service is back, and the consumer must
// not hammer the service meanwhile.
func TestAnOutageOfTheReviewServiceDeadLettersNothing(t *testing.T) {
	t.Parallel()
	for how, jobs := range map[string]int{
		"503":  30,
		"hang": 30,
		// Few jobs: all are read before the outage ends, so only failed
		// entries are left to probe the service with.
		"refused": 6,
	} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			service := newReviewService(t)
			service.setDown(how)
			cfg := b.cfg
			cfg.ReclaimIdle = 100 * time.Millisecond
			cfg.MaxDeliveries = 3
			cfg.HandlerTimeout = 500 * time.Millisecond
			var handled atomic.Int32
			http := HTTPHandler(service.URL(), nil)
			cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
				handled.Add(1)
				return http.Handle(ctx, j)
			})
			c, _ := b.start(t, cfg)
			b.publish(t, jobs)

			require.Never(t, func() bool { return b.count(t, db.StatusFailed) > 0 || len(b.deadLetters(t)) > 0 },
				2*time.Second, 20*time.Millisecond, "no job fails while the service is down")
			require.Len(t, b.logs.Matching("review service looks down"), 1, "the breaker opened, and said so once")
			require.EqualValues(t, 1, testutil.ToFloat64(c.m.CircuitOpen), "the gauge shows the breaker open")
			require.Less(t, int(handled.Load()), 100, "the consumer probes, it does not burn through the stream")
			service.setDown("")

			eventually(t, func() bool { return b.count(t, db.StatusReviewed) == jobs }, "every job reviewed after the outage")
			require.Zero(t, b.count(t, db.StatusFailed))
			require.Empty(t, b.deadLetters(t))
			eventually(t, func() bool { return len(b.logs.Matching("review service answers again")) == 1 }, "the breaker closed")
			require.Len(t, b.logs.Matching("review service looks down"), 1, "one line when it opens")
			require.Zero(t, testutil.ToFloat64(c.m.CircuitOpen))
			require.Positive(t, testutil.ToFloat64(c.m.TransientFailures))
		})
	}
}

// TestHandlerReportedFailuresStillDeadLetter: what the service says about
// the job itself (422, 500) counts toward MaxDeliveries as before.
func TestHandlerReportedFailuresStillDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 10)
	service := newReviewService(t)
	service.answer[ids[2]] = http.StatusUnprocessableEntity
	service.answer[ids[5]] = http.StatusInternalServerError
	cfg := b.cfg
	cfg.ReclaimIdle = 100 * time.Millisecond
	cfg.MaxDeliveries = 3
	cfg.Handler = HTTPHandler(service.URL(), nil)
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusFailed) == 2 }, "both dead-lettered")
	require.Equal(t, 8, b.count(t, db.StatusReviewed))
	require.Equal(t, 3, service.answered(ids[2], http.StatusUnprocessableEntity))
	require.Equal(t, 3, service.answered(ids[5], http.StatusInternalServerError))
	dead, err := b.rdb.XRange(ctx, "{"+b.stream+"}:dead", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 2)
	for _, d := range dead {
		require.Equal(t, "3", d.Values["deliveries"])
	}
	require.Empty(t, b.logs.Matching("review service looks down"), "failures of jobs are no outage")
}

// TestFailedDeliveriesBackOff: each retry of a failing job waits twice as
// long as the one before, from ReclaimIdle.
func TestFailedDeliveriesBackOff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 1)
	var mu sync.Mutex
	var calls []time.Time
	cfg := b.cfg
	cfg.ReclaimIdle = 100 * time.Millisecond
	cfg.MaxDeliveries = 5
	cfg.Handler = HandlerFunc(func(context.Context, Job) error {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
		return errors.New("the description is not a job posting")
	})
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "dead-lettered after MaxDeliveries")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, 5, "deliveries of %s", ids[0])
	for i := 1; i < len(calls); i++ {
		want := time.Duration(float64(cfg.ReclaimIdle) * float64(int(1)<<(i-1)) * 0.9) // jitter takes at most 10% off
		require.GreaterOrEqual(t, calls[i].Sub(calls[i-1]), want, "wait before delivery %d", i+1)
	}
}

// TestTransientFailuresCountSlower: a job whose handler keeps timing out,
// while others succeed (no outage), is still dead-lettered in the end, but
// only after MaxDeliveries × transientPerDelivery failures.
func TestTransientFailuresCountSlower(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish(t, 3)
	var calls calls
	cfg := b.cfg
	cfg.ReclaimIdle = 50 * time.Millisecond
	cfg.MaxDeliveries = 2
	cfg.HandlerTimeout = 20 * time.Millisecond
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error {
		calls.add(j.ID)
		if j.ID == ids[0] {
			<-ctx.Done() // always too slow
			return ctx.Err()
		}
		return nil
	})
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "dead-lettered in the end")
	// MaxDeliveries × transientPerDelivery calls, unless the machine stalls
	// past ReclaimIdle while a handler runs: that reclaim counts as a
	// delivery of its own. Either way, more calls than deliveries.
	require.Greater(t, calls.get(ids[0]), cfg.MaxDeliveries, "transient failures count less than one per call")
	require.Equal(t, 2, b.count(t, db.StatusReviewed))
	var lastError string
	require.NoError(t, b.schema.Pool.QueryRow(testenv.Context(t), `SELECT last_error FROM jobs WHERE id = $1`, ids[0]).Scan(&lastError))
	require.Contains(t, lastError, "timed out")
}

func TestWhichFailuresAreTransient(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.WriteHeader(code)
	}))
	defer service.Close()
	for code, transient := range map[int]bool{
		400: false, 401: false, 404: false, 409: false, 422: false, 500: false, 501: false,
		408: true, 429: true, 502: true, 503: true, 504: true,
	} {
		err := HTTPHandler(service.URL+"/"+strconv.Itoa(code), nil).Handle(ctx, sampleJob)
		require.ErrorContains(t, err, strconv.Itoa(code))
		require.Equal(t, transient, IsTransient(err), "HTTP %d", code)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	err = HTTPHandler(gone, nil).Handle(ctx, sampleJob)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.True(t, IsTransient(err), "connection refused")
	err = HTTPHandler("http://no-such-host.invalid/review", nil).Handle(ctx, sampleJob)
	require.True(t, IsTransient(err), "DNS: %v", err)

	logger := slog.New(slog.DiscardHandler)
	require.False(t, IsTransient(ExecHandler("exit 1", logger).Handle(ctx, sampleJob)), "an exit status is a verdict")
	require.True(t, IsTransient(ExecHandler("echo review service down >&2; exit 75", logger).Handle(ctx, sampleJob)), "EX_TEMPFAIL")

	require.False(t, IsTransient(errors.New("not a job posting")))
	require.False(t, IsTransient(nil))
	require.True(t, IsTransient(fmt.Errorf("review: %w", Transient(errors.New("model overloaded")))))
	require.True(t, IsTransient(fmt.Errorf("review: %w", context.DeadlineExceeded)))
	require.True(t, IsTransient(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNRESET}))
	require.NoError(t, Transient(nil))
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	c := &Consumer{cfg: (&Config{Handler: LogHandler(slog.New(slog.DiscardHandler))}).withDefaults()}
	within := func(d, want time.Duration) bool { return d >= want-want/10 && d <= want+want/10 }
	// The defaults: 1m, 2m, 4m, 8m, 16m, then 30m.
	for failures, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute,
		4: 8 * time.Minute, 5: 16 * time.Minute, 6: 30 * time.Minute, 60: 30 * time.Minute} {
		for range 20 {
			require.True(t, within(c.retryDelay(failures), want), "failure %d: %s", failures, c.retryDelay(failures))
		}
	}
	// With the defaults a job the service reports bad is dead-lettered
	// after 1+2+4+8 = 15 minutes of retries; a job failing transiently
	// takes three times the deliveries, and while the service is down not
	// one of its failures counts.
	c.cfg.ReclaimIdle = time.Hour // longer than the cap: the floor wins
	require.True(t, within(c.retryDelay(3), time.Hour))
}
