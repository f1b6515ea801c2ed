package consumer

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Secrets of the handler specs below, one per place a secret hides.
var handlerSecrets = []string{
	"envsecret1",    // exec: VAR=value assignment
	"argsecret2",    // exec: --token value
	"bearersecret3", // exec: -H 'Authorization: Bearer value'
	"flagsecret4",   // exec: --password=value
	"passsecret5",   // http: userinfo password
	"querysecret6",  // http: ?token=
	"querysecret7",  // http: ?api_key=
	"usersecret8",   // http: a token as the userinfo's user name
	"pathsecret9",   // http: a webhook's token in the path
}

const secretExecSpec = `exec:API_TOKEN=envsecret1 sh -c 'echo "token=$API_TOKEN args=$*" >&2; echo "out $*"; exit 1' review ` +
	`--token argsecret2 -H 'Authorization: Bearer bearersecret3' --password=flagsecret4`

func secretHTTPSpec(hostPort string) string {
	return "http:http://reviewer:passsecret5@" + hostPort + "/review?token=querysecret6&api_key=querysecret7"
}

func requireNoSecret(t *testing.T, where, s string) {
	t.Helper()
	for _, secret := range handlerSecrets {
		require.NotContains(t, s, secret, "a secret in %s: %q", where, s)
	}
}

func TestHandlerSpecsAreRedacted(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	specs := []string{
		secretExecSpec,
		secretHTTPSpec("review.internal:8443"),
		"https://usersecret8@review.internal/v1?token=querysecret6",
		"http:https://review.internal/v1?querysecret7",                  // a bare token as the query
		"http:https://hooks.example.com/services/T000/B000/pathsecret9", // a webhook
	}
	for _, spec := range specs {
		shown := RedactSpec(spec)
		requireNoSecret(t, "RedactSpec", shown)
		h, err := ParseHandler(spec, logger)
		require.NoError(t, err, RedactSpec(spec))
		s, ok := h.(interface{ String() string })
		require.True(t, ok, "the handler names itself")
		requireNoSecret(t, "String", s.String())
		require.Equal(t, shown, s.String())
	}
	require.Equal(t, "exec:API_TOKEN=xxxxx sh (+8 args hidden)", RedactSpec(secretExecSpec))
	require.Equal(t, "http:http://reviewer:xxxxx@review.internal:8443/review?token=xxxxx&api_key=xxxxx",
		RedactSpec(secretHTTPSpec("review.internal:8443")))
	require.Equal(t, "log", RedactSpec("log"))
	require.Equal(t, "http:https://hooks.example.com/services/xxxxx",
		RedactSpec("http:https://hooks.example.com/services/T000/B000/pathsecret9"))

	// Specs that are refused do not quote their secrets either.
	for _, spec := range []string{
		"htp:https://x/?token=querysecret6",
		"http:ftp://reviewer:passsecret5@x/?token=querysecret6",
		"http:http://reviewer:passsecret5@[::1/?token=querysecret6",
		"exe:API_TOKEN=envsecret1 review",
	} {
		_, err := ParseHandler(spec, logger)
		require.Error(t, err)
		requireNoSecret(t, "ParseHandler error", err.Error())
	}
}

func TestHandlerSecretsStaySecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 3)

	// A review service that refuses, echoing what it was sent.
	review := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, "cannot review "+r.URL.String()+" for "+user+":"+pass)
	}))
	defer review.Close()
	// And one that is gone: Go's *url.Error quotes the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := ln.Addr().String()
	require.NoError(t, ln.Close())

	handlers := map[string]Handler{}
	for i, spec := range []string{secretExecSpec, secretHTTPSpec(review.Listener.Addr().String()), secretHTTPSpec(gone)} {
		h, err := ParseHandler(spec, b.cfg.Logger)
		require.NoError(t, err)
		handlers[ids[i]] = h
	}
	reg := prometheus.NewRegistry()
	cfg := b.cfg
	cfg.MaxDeliveries = 1
	cfg.Registerer = reg
	cfg.Handler = HandlerFunc(func(ctx context.Context, j Job) error { return handlers[j.ID].Handle(ctx, j) })
	b.start(t, cfg)

	lastErrors := func() map[string]string {
		rows, err := b.schema.Pool.Query(ctx, `SELECT id::text, coalesce(last_error, '') FROM jobs`)
		require.NoError(t, err)
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var id, e string
			require.NoError(t, rows.Scan(&id, &e))
			out[id] = e
		}
		require.NoError(t, rows.Err())
		return out
	}
	eventually(t, func() bool {
		errs := lastErrors()
		return b.count(t, db.StatusFailed) >= 2 && errs[ids[0]] != "" && errs[ids[1]] != "" && errs[ids[2]] != ""
	}, "every delivery failed")

	errs := lastErrors()
	require.Contains(t, errs[ids[0]], "exit status 1", "the error still says what happened")
	require.Contains(t, errs[ids[0]], "token=xxxxx", "stderr is kept, scrubbed")
	require.Contains(t, errs[ids[1]], "422")
	for id, e := range errs {
		requireNoSecret(t, "last_error of "+id, e)
	}
	dead, err := b.rdb.XRange(ctx, "{"+b.stream+"}:dead", "-", "+").Result()
	require.NoError(t, err)
	require.NotEmpty(t, dead)
	for _, d := range dead {
		for k, v := range d.Values {
			requireNoSecret(t, "dead letter field "+k, v.(string))
		}
	}
	records := b.logs.Records()
	require.NotEmpty(t, b.logs.Matching("handler output"), "stdout is logged (scrubbed)")
	for _, r := range records {
		requireNoSecret(t, "log message", r.Message)
		for k, v := range r.Attrs {
			requireNoSecret(t, "log attribute "+k, v)
		}
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "jobrelay_consumer_jobs_total")
	requireNoSecret(t, "/metrics", rec.Body.String())
}
