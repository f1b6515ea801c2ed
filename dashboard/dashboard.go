// Package dashboard serves a web page of a jobrelay pipeline: jobs by
// status, the backlog's ages (by priority and tenant too), the stream (each
// partition) and its consumer groups, the dead letters and a throughput
// chart, a page per dead letter's job showing its whole life, and, when
// enabled, buttons that retry failed jobs.
//
// Everything it serves is in the binary (html/template, embedded CSS and a
// little JavaScript; no build step, no CDN). It reads the pipeline through
// package inspect, as `jobrelay status` does, and cheaply: however many
// people look, it reads the state at most once per Config.Refresh, and its
// chart is drawn from snapshots that the metrics collector takes anyway
// (Observe).
//
// jobrelay mounts it at /ui on its metrics listener. A program that embeds
// the relay and the consumer can mount it on its own:
//
//	dash, err := dashboard.New(pool, rdb, dashboard.Config{Stream: "job_review"})
//	if err != nil { ... }
//	mux.Handle("/ui/", dash)
//
// The page shows what the pipeline holds (job titles, handler errors):
// serve it on a private address, and set Username and Password.
package dashboard

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/inspect"
	"github.com/jobrelay/jobrelay/internal/retry"
)

// Defaults of Config.
const (
	// PrefixDefault is the path the dashboard is served under.
	PrefixDefault = "/ui"
	// WindowDefault is how far back the throughput chart goes.
	WindowDefault = 15 * time.Minute
	// DeadLettersShown is how many of the newest dead letters the dead
	// letters page lists.
	DeadLettersShown = 100
)

// streamDefault is relay.StreamDefault.
const streamDefault = "job_review"

// readTimeout bounds the reads of one page.
const readTimeout = 10 * time.Second

// Config configures a Dashboard.
type Config struct {
	// Stream is the pipeline's stream. Defaults to "job_review".
	Stream string
	// Partitions is the number of streams the pipeline spreads its jobs
	// over (STREAM_PARTITIONS): the overview shows each, the dead letters
	// page lists the dead letters of all, and the retries remove a job's
	// dead letter from its partition's. Defaults to 1.
	Partitions int
	// Prefix is the path the dashboard is served under, without a
	// trailing slash. Defaults to "/ui".
	Prefix string
	// Write shows the actions (retry a failed job, retry all failed jobs)
	// and accepts them. Defaults to false: the dashboard is read-only, and
	// refuses any action with 403.
	Write bool
	// Username and Password, when Username is set, protect every page with
	// HTTP basic auth. Defaults to none.
	Username, Password string
	// Refresh is the least time between two reads of the pipeline's state
	// (one inspect.Take, counts by status included), however many people
	// look; an action reads it afresh. Defaults to inspect.RefreshDefault,
	// the metrics collector's own interval.
	Refresh time.Duration
	// Window is how far back the throughput chart goes. Defaults to
	// WindowDefault.
	Window time.Duration
	// Logger receives the actions taken and the errors of reads. Defaults
	// to discarding them.
	Logger *slog.Logger
}

// Dashboard is an http.Handler that serves the dashboard under its prefix.
type Dashboard struct {
	pool *pgxpool.Pool
	rdb  redis.UniversalClient
	cfg  Config

	pages   map[string]*template.Template
	static  http.Handler
	mux     *http.ServeMux
	origin  *http.CrossOriginProtection
	token   string   // the CSRF token of this process
	authSum [32]byte // sha256 of "user:password", for a constant-time compare

	snaps   snapshotCache
	history *history
	// takeFunc reads a snapshot; tests count its calls.
	takeFunc func(ctx context.Context) (*inspect.Snapshot, error)
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New returns a Dashboard of the pipeline that pool and rdb reach.
func New(pool *pgxpool.Pool, rdb redis.UniversalClient, cfg Config) (*Dashboard, error) {
	cfg.Stream = cmp.Or(cfg.Stream, streamDefault)
	cfg.Prefix = strings.TrimSuffix(cmp.Or(cfg.Prefix, PrefixDefault), "/")
	cfg.Refresh = cmp.Or(cfg.Refresh, inspect.RefreshDefault)
	cfg.Partitions = cmp.Or(cfg.Partitions, 1)
	cfg.Window = cmp.Or(cfg.Window, WindowDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case !strings.HasPrefix(cfg.Prefix, "/") || strings.ContainsAny(cfg.Prefix, "{} "):
		return nil, fmt.Errorf("dashboard: Prefix must be a path such as /ui, got %q", cfg.Prefix)
	case cfg.Partitions < 1:
		return nil, fmt.Errorf("dashboard: Partitions must be at least 1, got %d", cfg.Partitions)
	case cfg.Refresh < 0:
		return nil, fmt.Errorf("dashboard: Refresh must not be negative, got %s", cfg.Refresh)
	case cfg.Window < time.Minute:
		return nil, fmt.Errorf("dashboard: Window must be at least 1m, got %s", cfg.Window)
	case cfg.Username == "" && cfg.Password != "":
		return nil, errors.New("dashboard: Password is set without a Username")
	case strings.Contains(cfg.Username, ":"):
		return nil, errors.New("dashboard: Username must not contain a colon")
	}
	var token [32]byte
	if _, err := rand.Read(token[:]); err != nil {
		return nil, fmt.Errorf("dashboard: CSRF token: %w", err)
	}
	d := &Dashboard{
		pool:    pool,
		rdb:     rdb,
		cfg:     cfg,
		origin:  http.NewCrossOriginProtection(),
		token:   hex.EncodeToString(token[:]),
		history: newHistory(cfg.Window),
	}
	if cfg.Username != "" {
		d.authSum = sha256.Sum256([]byte(cfg.Username + ":" + cfg.Password))
	}
	d.takeFunc = func(ctx context.Context) (*inspect.Snapshot, error) {
		return inspect.Take(ctx, d.pool, d.rdb, inspect.Options{Stream: d.cfg.Stream, Partitions: d.cfg.Partitions, Counts: true})
	}
	var err error
	if d.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static files: %w", err)
	}
	d.static = http.StripPrefix(cfg.Prefix+"/static/", http.FileServerFS(static))

	p := cfg.Prefix
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("GET "+p+"/{$}", d.overview)
	d.mux.HandleFunc("GET "+p+"/dead-letters", d.deadLetters)
	d.mux.HandleFunc("GET "+p+"/jobs/{id}", d.job)
	d.mux.HandleFunc("POST "+p+"/retry", d.retry)
	d.mux.HandleFunc("GET "+p+"/static/", d.serveStatic)
	d.mux.Handle("GET "+p, http.RedirectHandler(p+"/", http.StatusMovedPermanently))
	d.mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	return d, nil
}

// Observe records a snapshot for the throughput chart. Pass it as the
// metrics collector's inspect.CollectorConfig.ObserveFunc: the chart then
// costs no reads of its own.
func (d *Dashboard) Observe(s *inspect.Snapshot) { d.history.add(s) }

// ServeHTTP serves the dashboard's pages under its prefix.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything comes from this origin; nothing may frame the page.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	if d.cfg.Username != "" && !d.authorized(r) {
		h.Set("WWW-Authenticate", `Basic realm="jobrelay", charset="UTF-8"`)
		http.Error(w, "401 unauthorized: this dashboard needs a username and password (UI_AUTH)", http.StatusUnauthorized)
		return
	}
	d.mux.ServeHTTP(w, r)
}

// authorized compares the request's basic-auth credentials with the
// configured ones in constant time (their hashes, so that not even their
// lengths leak).
func (d *Dashboard) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(user + ":" + pass))
	return subtle.ConstantTimeCompare(sum[:], d.authSum[:]) == 1
}

func (d *Dashboard) serveStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	d.static.ServeHTTP(w, r)
}

// snapshot is the pipeline's latest state, read at most once per Refresh.
func (d *Dashboard) snapshot(ctx context.Context) (*inspect.Snapshot, error) {
	return d.snaps.get(ctx, d.cfg.Refresh, func(ctx context.Context) (*inspect.Snapshot, error) {
		s, err := d.takeFunc(ctx)
		if err != nil {
			d.cfg.Logger.WarnContext(ctx, "dashboard: reading the pipeline state failed", slog.String("err", err.Error()))
			return nil, err
		}
		d.history.add(s)
		return s, nil
	})
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	snap, err := d.snapshot(r.Context())
	if snap == nil {
		d.fail(w, r, http.StatusServiceUnavailable, "The pipeline cannot be read: "+err.Error())
		return
	}
	v := d.newOverview(snap, time.Now())
	d.render(w, r, "overview", d.newPage(r, "Overview", "overview", snap, err), v)
}

func (d *Dashboard) deadLetters(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	snap, snapErr := d.snapshot(ctx)
	list, err := inspect.ReadPartitionDeadLetters(ctx, d.rdb, d.cfg.Stream, d.cfg.Partitions, DeadLettersShown)
	if err != nil {
		d.fail(w, r, http.StatusServiceUnavailable, "The dead letters cannot be read: "+err.Error())
		return
	}
	d.render(w, r, "dead", d.newPage(r, "Dead letters", "dead", snap, snapErr), d.newDeadView(snap, list, time.Now()))
}

func (d *Dashboard) job(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	id := r.PathValue("id")
	life, err := inspect.ReadJob(ctx, d.pool, d.rdb, d.cfg.Stream, id)
	if errors.Is(err, db.ErrNotFound) {
		d.fail(w, r, http.StatusNotFound, "No job has the ID "+strconv.Quote(id)+".")
		return
	}
	if err != nil {
		d.fail(w, r, http.StatusServiceUnavailable, "The job cannot be read: "+err.Error())
		return
	}
	d.render(w, r, "job", d.newPage(r, "Job "+id, "job", nil, nil), newJobView(life))
}

// retry sends one failed job (form field job) or all of them back to
// pending_review, as `jobrelay retry --failed [--job ID]` does, then
// redirects to the job's page if the form field back is "job", else to the
// dead letters.
func (d *Dashboard) retry(w http.ResponseWriter, r *http.Request) {
	if !d.cfg.Write {
		d.fail(w, r, http.StatusForbidden, "This dashboard is read-only: actions need UI_WRITE=true.")
		return
	}
	if err := d.origin.Check(r); err != nil {
		d.fail(w, r, http.StatusForbidden, "Refused: the request came from another site.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		d.fail(w, r, http.StatusBadRequest, "The form cannot be read.")
		return
	}
	cookie, err := r.Cookie(csrfCookie)
	if err != nil || !d.validToken(cookie.Value) || !d.validToken(r.PostFormValue("csrf")) {
		d.fail(w, r, http.StatusForbidden, "Refused: the form's token is missing or wrong. Reload the page and try again.")
		return
	}
	jobID := r.PostFormValue("job")
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	res, err := retry.FailedPartitions(ctx, d.pool, d.rdb, d.cfg.Stream, d.cfg.Partitions, jobID)
	if errors.Is(err, db.ErrNotFound) {
		d.fail(w, r, http.StatusNotFound, "Job "+strconv.Quote(jobID)+" is not failed: nothing to retry (was it retried already?).")
		return
	}
	if len(res.JobIDs) > 0 {
		d.cfg.Logger.InfoContext(ctx, "dashboard: failed jobs sent back to pending_review", slog.Int("num_jobs", len(res.JobIDs)),
			slog.Any("job_ids", firstIDs(res.JobIDs, 10)), slog.Int64("num_dead_letters_removed", res.DeadLettersRemoved),
			slog.String("remote_addr", r.RemoteAddr))
	}
	if err != nil {
		d.cfg.Logger.ErrorContext(ctx, "dashboard: retry failed", slog.String("err", err.Error()))
		d.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	d.snaps.invalidate()
	// Only to one of the dashboard's own pages: the job's ID is the one the
	// database returned.
	back := d.cfg.Prefix + "/dead-letters"
	if r.PostFormValue("back") == "job" && len(res.JobIDs) == 1 {
		back = d.cfg.Prefix + "/jobs/" + url.PathEscape(res.JobIDs[0])
	}
	http.Redirect(w, r, back+"?retried="+strconv.Itoa(len(res.JobIDs)), http.StatusSeeOther)
}

// firstIDs is at most n of ids, for a log line.
func firstIDs(ids []string, n int) []string { return ids[:min(n, len(ids))] }

// csrfCookie carries the CSRF token that forms must repeat.
const csrfCookie = "jobrelay_csrf"

func (d *Dashboard) validToken(s string) bool {
	return subtle.ConstantTimeCompare([]byte(s), []byte(d.token)) == 1
}

// render writes a page. With write actions, it also sets the CSRF cookie
// that the page's forms repeat in a hidden field.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, name string, p page, body any) {
	d.renderStatus(w, r, http.StatusOK, name, p, body)
}

func (d *Dashboard) renderStatus(w http.ResponseWriter, r *http.Request, status int, name string, p page, body any) {
	if d.cfg.Write {
		// Secure only over TLS: the dashboard is served over plain HTTP on
		// a private address, where a Secure cookie would never come back.
		http.SetCookie(w, &http.Cookie{ //nolint:gosec // Secure whenever the request came over TLS (see above)
			Name: csrfCookie, Value: d.token, Path: d.cfg.Prefix + "/", HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
		})
	}
	p.Body = body
	var buf strings.Builder
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		d.cfg.Logger.ErrorContext(r.Context(), "dashboard: render failed", slog.String("page", name), slog.String("err", err.Error()))
		http.Error(w, "500 the page cannot be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// fail writes an error page.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := d.newPage(r, http.StatusText(status), "", nil, nil)
	d.renderStatus(w, r, status, "error", p, errorView{Status: status, Text: http.StatusText(status), Message: msg})
}
