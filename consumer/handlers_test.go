package consumer

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

var sampleJob = Job{
	ID: "0b3e4a4e-9a57-4a0c-8f4e-2b1b3c4d5e6f", Site: new("linkedin"), Title: new("Go Developer"), Company: new("Acme"),
	URL: new("https://example.com/1"), Attempt: 2, TaskID: "1700000000000-0",
	EnqueuedAt: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Delivery: 3,
}

func TestJobJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(sampleJob)
	require.NoError(t, err)
	require.JSONEq(t, `{"job_id":"0b3e4a4e-9a57-4a0c-8f4e-2b1b3c4d5e6f","site":"linkedin","title":"Go Developer",
		"company":"Acme","job_url":"https://example.com/1","attempt":2,"task_id":"1700000000000-0",
		"enqueued_at":"2026-11-28T10:00:00Z","delivery":3}`, string(b))

	// A NULL column is null, an empty one "".
	job := sampleJob
	job.Site, job.Title = nil, new("")
	b, err = json.Marshal(job)
	require.NoError(t, err)
	require.JSONEq(t, `{"job_id":"0b3e4a4e-9a57-4a0c-8f4e-2b1b3c4d5e6f","site":null,"title":"",
		"company":"Acme","job_url":"https://example.com/1","attempt":2,"task_id":"1700000000000-0",
		"enqueued_at":"2026-11-28T10:00:00Z","delivery":3}`, string(b))
}

func TestExecHandler(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	logger := slog.New(slog.DiscardHandler)

	t.Run("JobOnStdinExitZero", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "job.json")
		require.NoError(t, ExecHandler("cat > "+out, logger).Handle(ctx, sampleJob))
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		var got Job
		require.NoError(t, json.Unmarshal(b, &got))
		require.Equal(t, sampleJob, got)
	})

	t.Run("NonZeroExitCarriesStderrTail", func(t *testing.T) {
		t.Parallel()
		err := ExecHandler(`head -c 5000 /dev/zero | tr '\0' x >&2; echo "fit score unavailable" >&2; exit 3`, logger).Handle(ctx, sampleJob)
		require.ErrorContains(t, err, "exit status 3")
		require.ErrorContains(t, err, "fit score unavailable")
		require.Less(t, len(err.Error()), 1200, "only the tail of stderr")
	})

	t.Run("KilledAtTheDeadline", func(t *testing.T) {
		t.Parallel()
		hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		// A child that would outlive sh if only sh were killed.
		err := ExecHandler("sleep 30 & wait", logger).Handle(hctx, sampleJob)
		require.ErrorContains(t, err, "killed")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), 10*time.Second)
	})
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, http.MethodPost, r.Method)
		require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		var j Job
		require.NoError(t, json.NewDecoder(r.Body).Decode(&j))
		switch r.URL.Path {
		case "/ok":
			require.Equal(t, sampleJob, j)
			require.Equal(t, sampleJob.ID+":2", r.Header.Get("Idempotency-Key"))
			w.WriteHeader(http.StatusAccepted)
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "review model overloaded")
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
	}))
	defer srv.Close()

	require.NoError(t, HTTPHandler(srv.URL+"/ok", srv.Client()).Handle(ctx, sampleJob))

	err := HTTPHandler(srv.URL+"/fail", srv.Client()).Handle(ctx, sampleJob)
	require.ErrorContains(t, err, "503")
	require.ErrorContains(t, err, "review model overloaded")

	hctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = HTTPHandler(srv.URL+"/slow", srv.Client()).Handle(hctx, sampleJob)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestParseHandler(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	for _, ok := range []string{"", "log", "exec:python3 review.py", "http:http://localhost:8000/review", "https://review.internal/v1", "http://localhost:8000/review"} {
		h, err := ParseHandler(ok, logger)
		require.NoError(t, err, ok)
		require.NotNil(t, h)
	}
	for spec, want := range map[string]string{
		"exec:":                     "needs a command",
		"http:localhost:8000":       "http(s) URL",
		"http:ftp://x":              "http(s) URL",
		"crewai":                    "unknown handler",
		"http:http://u:secret@[::1": "invalid URL",
	} {
		_, err := ParseHandler(spec, logger)
		require.ErrorContains(t, err, want, spec)
		require.NotContains(t, err.Error(), "secret", "password leaked: %v", err)
	}
}
