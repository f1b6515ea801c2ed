package consumer

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
	"github.com/jobrelay/jobrelay/relay"
)

// Issue 14, item 6: a NULL column is absent from the stream entry and null
// in the JSON the exec and http handlers send; an empty column is "" in
// both. End to end: rows relayed from the table, reviewed by each handler.
func TestNullColumnsAreNullAndEmptyOnesEmpty(t *testing.T) {
	t.Parallel()

	// Each handler reports the JSON it was given, by job ID.
	handlers := map[string]func(t *testing.T) (Handler, func() map[string]map[string]any){
		"exec": func(t *testing.T) (Handler, func() map[string]map[string]any) {
			t.Helper()
			out := filepath.Join(t.TempDir(), "jobs.jsonl")
			return ExecHandler("cat >> '"+out+"'", slog.New(slog.DiscardHandler)), func() map[string]map[string]any {
				f, err := os.Open(out)
				if os.IsNotExist(err) {
					return nil
				}
				require.NoError(t, err)
				defer f.Close()
				got := map[string]map[string]any{}
				sc := bufio.NewScanner(f)
				for sc.Scan() {
					var job map[string]any
					require.NoError(t, json.Unmarshal(sc.Bytes(), &job), sc.Text())
					got[job["job_id"].(string)] = job
				}
				require.NoError(t, sc.Err())
				return got
			}
		},
		"http": func(t *testing.T) (Handler, func() map[string]map[string]any) {
			t.Helper()
			var (
				mu  sync.Mutex
				got = map[string]map[string]any{}
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				var job map[string]any
				if err == nil {
					err = json.Unmarshal(body, &job)
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				got[job["job_id"].(string)] = job
			}))
			t.Cleanup(srv.Close)
			return HTTPHandler(srv.URL, srv.Client()), func() map[string]map[string]any {
				mu.Lock()
				defer mu.Unlock()
				return maps.Clone(got)
			}
		},
	}
	for name, newHandler := range handlers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			b := setup(t)
			var nulls, empties string
			require.NoError(t, b.schema.Pool.QueryRow(ctx, `
WITH rows AS (
  INSERT INTO jobs (site, title, company, job_url) VALUES
    (NULL, NULL, 'Acme', NULL), ('', '', '', '')
  RETURNING id::text, company)
SELECT max(id) FILTER (WHERE company = 'Acme'), max(id) FILTER (WHERE company = '') FROM rows`).Scan(&nulls, &empties))
			r, err := relay.New(b.schema.Pool, b.rdb, relay.Config{Stream: b.stream, MaxStreamLag: -1, MaxMemoryRatio: -1})
			require.NoError(t, err)
			_, err = r.Drain(ctx)
			require.NoError(t, err)

			// In the stream: NULL columns absent, empty ones "".
			entries, err := b.rdb.XRange(ctx, b.stream, "-", "+").Result()
			require.NoError(t, err)
			require.Len(t, entries, 2)
			for _, e := range entries {
				switch e.Values["job_id"] {
				case nulls:
					require.Equal(t, "Acme", e.Values["company"])
					require.Equal(t, map[string]any{"company": "Acme"}, columns(e.Values), "NULL columns are absent from the entry")
				case empties:
					require.Equal(t, map[string]any{"site": "", "title": "", "company": "", "job_url": ""}, columns(e.Values),
						"empty columns are empty fields")
				default:
					t.Fatalf("an entry of no job inserted: %v", e.Values)
				}
			}

			h, reviewed := newHandler(t)
			cfg := b.cfg
			cfg.Handler, cfg.Concurrency = h, 1
			b.start(t, cfg)
			require.Eventually(t, func() bool { return b.count(t, db.StatusReviewed) == 2 }, time.Minute, 5*time.Millisecond)

			got := reviewed()
			require.Len(t, got, 2)
			require.Equal(t, map[string]any{"site": nil, "title": nil, "company": "Acme", "job_url": nil}, columns(got[nulls]),
				"NULL columns are null in the JSON")
			require.Equal(t, map[string]any{"site": "", "title": "", "company": "", "job_url": ""}, columns(got[empties]),
				"empty columns are \"\" in the JSON")
			require.EqualValues(t, 1, got[empties]["attempt"])
		})
	}
}

// columns picks the job's columns that are there (an entry's fields, or
// the keys of the JSON) out of v.
func columns(v map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"site", "title", "company", "job_url"} {
		if x, ok := v[k]; ok {
			out[k] = x
		}
	}
	return out
}
