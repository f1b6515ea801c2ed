package consumer

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// redirecting is a review service that answers every POST with a
// redirect to target, and counts the calls target gets.
func redirecting(t *testing.T, code int) (review *httptest.Server, targetCalls *atomic.Int32, location string) {
	t.Helper()
	targetCalls = &atomic.Int32{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetCalls.Add(1) // a GET here would "succeed" with no review done
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(target.Close)
	location = target.URL + "/moved/review"
	review = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, location, code)
	}))
	t.Cleanup(review.Close)
	return review, targetCalls, location
}

func TestHTTPHandlerDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			review, targetCalls, location := redirecting(t, code)
			err := HTTPHandler(review.URL+"/review", nil).Handle(testenv.Context(t), sampleJob)
			require.Error(t, err, "a redirect is not a review")
			require.ErrorContains(t, err, strconv.Itoa(code))
			// The Location, with its path past the first segment masked
			// as the handler's own URL is (it may carry a token).
			require.ErrorContains(t, err, strings.TrimSuffix(location, "review")+"xxxxx")
			require.False(t, IsTransient(err), "a redirect counts as a failed delivery")
			require.Zero(t, targetCalls.Load(), "the redirect target is never called")
		})
	}
	t.Run("GivenClient", func(t *testing.T) {
		t.Parallel()
		review, targetCalls, _ := redirecting(t, http.StatusFound)
		client := review.Client() // follows redirects: the handler must not
		require.Error(t, HTTPHandler(review.URL, client).Handle(testenv.Context(t), sampleJob))
		require.Zero(t, targetCalls.Load())
		require.Nil(t, client.CheckRedirect, "the caller's client is left as it was")
	})
}

func TestARedirectIsNotAReview(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testenv.Context(t)
	ids := b.publish(t, 1)
	review, targetCalls, location := redirecting(t, http.StatusSeeOther) // POST becomes GET
	cfg := b.cfg
	cfg.MaxDeliveries = 1
	cfg.Handler = HTTPHandler(review.URL+"/review", nil)
	b.start(t, cfg)
	eventually(t, func() bool { return b.count(t, db.StatusFailed) == 1 }, "the delivery failed")
	require.Zero(t, b.count(t, db.StatusReviewed))
	var lastError string
	require.NoError(t, b.schema.Pool.QueryRow(ctx, `SELECT last_error FROM jobs WHERE id = $1`, ids[0]).Scan(&lastError))
	require.Contains(t, lastError, "303")
	require.Contains(t, lastError, strings.TrimSuffix(location, "review")+"xxxxx")
	require.Zero(t, targetCalls.Load())
}
