package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// LogHandler logs each job, as the old poller's process_job_review did, and
// succeeds. It is the default handler: it shows the pipeline working before
// a real review service is plugged in. Each field is logged up to
// maxLoggedField bytes (see truncateField), so a job with a megabyte title
// does not make a megabyte log line.
func LogHandler(logger *slog.Logger) Handler { return logHandler{logger} }

type logHandler struct{ logger *slog.Logger }

// String is the handler's spec.
func (logHandler) String() string { return "log" }

// Handle logs job.
func (h logHandler) Handle(ctx context.Context, job Job) error {
	h.logger.InfoContext(ctx, "Processing job review",
		slog.String("job_id", truncateField(job.ID)), column("title", job.Title),
		column("company", job.Company), column("site", job.Site),
		column("job_url", job.URL), slog.String("task_id", truncateField(job.TaskID)),
		slog.Int("attempt", job.Attempt), slog.Int64("delivery", job.Delivery))
	return nil
}

// column is a job column's attribute: the value, truncated, or nil (null
// in JSON logs) for NULL.
func column(key string, v *string) slog.Attr {
	if v == nil {
		return slog.Any(key, nil)
	}
	return slog.String(key, truncateField(*v))
}

// maxLoggedField is the most bytes of one field the log handler writes.
const maxLoggedField = 1024

// truncateField shortens s to maxLoggedField bytes, cut on a rune boundary,
// followed by "…(N bytes)" giving the field's whole length.
func truncateField(s string) string {
	if len(s) <= maxLoggedField {
		return s
	}
	cut := maxLoggedField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// stderrTail is how much of a command's stderr, or an HTTP error body, goes
// into last_error; stdoutHead, how much of a command's stdout is logged.
const (
	stderrTail = 1024
	stdoutHead = 1024
)

// ExecHandler runs a command for each job, through "sh -c", with the job as
// JSON on stdin (one line). Exit status 0 is success; otherwise the job
// fails with the tail of stderr as its error. The failure is transient
// (see TransientError) if the command exits with ExitTempFail (75), or
// cannot be started; any other exit status is the command's verdict on the
// job. When the handler's context ends (HandlerTimeout, shutdown) the
// command and its children are killed. The start of stdout is logged at
// Debug.
//
// The command line may hold secrets (API_TOKEN=… cmd, --token …): errors
// and logs name the command only as RedactSpec shows it, and what looks
// secret in it is masked in the stderr and stdout they carry.
func ExecHandler(command string, logger *slog.Logger) Handler {
	return &execHandler{command: command, logger: logger,
		shown: "exec:" + redactCommand(command), scrub: newScrubber(commandSecrets(command))}
}

type execHandler struct {
	command string
	logger  *slog.Logger
	shown   string // the redacted spec
	scrub   scrubber
}

// String is the handler's spec, redacted.
func (h *execHandler) String() string { return h.shown }

// Handle runs the command for job.
func (h *execHandler) Handle(ctx context.Context, job Job) error {
	payload, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", h.command)
	cmd.Stdin = bytes.NewReader(append(payload, '\n'))
	stdout := &headBuffer{max: stdoutHead}
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Kill the whole process group: sh and what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if out := strings.TrimSpace(stdout.String()); out != "" {
		h.logger.DebugContext(ctx, "consumer: handler output", slog.String("job_id", job.ID),
			slog.String("stdout", h.scrub.scrub(out)))
	}
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s killed: %w", h.shown, ctxErr)
	}
	if cmd.ProcessState == nil { // it never started: no process, no shell
		return Transient(fmt.Errorf("%s: %w", h.shown, err))
	}
	msg := h.scrub.scrub(strings.TrimSpace(stderr.String()))
	if msg != "" {
		err = fmt.Errorf("%s: %w: %s", h.shown, err, msg)
	} else {
		err = fmt.Errorf("%s: %w", h.shown, err)
	}
	if cmd.ProcessState.ExitCode() == ExitTempFail {
		return Transient(err)
	}
	return err
}

// ExitTempFail is the exit status by which an exec handler's command says
// that its failure is transient (the review service is down, say), not
// about the job: EX_TEMPFAIL of sysexits.h.
const ExitTempFail = 75

// HTTPHandler POSTs each job as JSON to url. A 2xx status is success;
// any other status, or no answer before the handler's context ends, is a
// failure, with the status and the start of the body as its error.
//
// Failures that say the service is unavailable, not that the job is bad,
// are transient (see TransientError): no answer at all (connection
// refused or reset, DNS, TLS, timeouts) and the statuses 408, 429, 502,
// 503 and 504. Other statuses (400, 422, 500…) are the service's verdict
// on the job.
//
// Redirects are not followed: a 3xx status fails the delivery, with the
// status and the Location in the error. Following one could turn the POST
// into a GET (301, 302 and 303 do) that a server answers 200 without
// reviewing anything. client is copied, not changed; nil means a default
// client.
//
// The URL may hold secrets (a password, ?token=…): errors name it only as
// RedactSpec shows it, never quote Go's *url.Error (which keeps the query),
// and mask those secrets in the response body they carry.
func HTTPHandler(target string, client *http.Client) Handler {
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &httpHandler{target: target, client: c, shown: redactURL(target), scrub: newScrubber(urlSecrets(target))}
}

type httpHandler struct {
	target string
	client *http.Client
	shown  string // the redacted URL
	scrub  scrubber
}

// String is the handler's spec, redacted.
func (h *httpHandler) String() string { return "http:" + h.shown }

// Handle POSTs job.
func (h *httpHandler) Handle(ctx context.Context, job Job) error {
	payload, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.target, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("POST %s: build request: %w", h.shown, unwrapURLError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", job.ID+":"+strconv.Itoa(job.Attempt))
	resp, err := h.client.Do(req)
	if err != nil {
		// No answer: whatever went wrong, it was not the job.
		return Transient(fmt.Errorf("POST %s: %w", h.shown, unwrapURLError(err)))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, stderrTail))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	switch resp.StatusCode / 100 {
	case 2:
		return nil
	case 3:
		loc := resp.Header.Get("Location")
		if loc == "" {
			loc = "(none)"
		} else {
			loc = h.scrub.scrub(redactURL(loc))
		}
		return fmt.Errorf("POST %s: %s, redirect to %s not followed (point the handler at the final URL)",
			h.shown, resp.Status, loc)
	}
	err = fmt.Errorf("POST %s: %s: %s", h.shown, resp.Status, h.scrub.scrub(strings.TrimSpace(string(body))))
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return Transient(err)
	}
	return err
}

// unwrapURLError drops the *url.Error around err: its message quotes the
// URL, query string included.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// httpTarget is the URL of an http handler spec: "http:URL", or the URL
// alone.
func httpTarget(spec string) string {
	if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
		return spec
	}
	return strings.TrimPrefix(spec, "http:")
}

// ParseHandler builds a built-in handler from its name on the command line:
// "log", "exec:CMD" or "http:URL", where URL is an http:// or https://
// URL (given alone, it is understood as "http:URL"). The handlers it
// returns are fmt.Stringers that show their spec as RedactSpec does; its
// errors quote the spec only so.
func ParseHandler(spec string, logger *slog.Logger) (Handler, error) {
	switch {
	case spec == "" || spec == "log":
		return LogHandler(logger), nil
	case strings.HasPrefix(spec, "exec:"):
		command := strings.TrimSpace(strings.TrimPrefix(spec, "exec:"))
		if command == "" {
			return nil, errors.New(`exec handler needs a command, as in "exec:python3 review.py"`)
		}
		return ExecHandler(command, logger), nil
	case strings.HasPrefix(spec, "http:") || strings.HasPrefix(spec, "https://"):
		target := httpTarget(spec)
		u, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("http handler: invalid URL %s", redactURL(target))
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf(`http handler needs an http(s) URL, as in "http:http://localhost:8000/review", got %q`, redactURL(target))
		}
		return HTTPHandler(target, nil), nil
	}
	return nil, fmt.Errorf(`unknown handler %q: want "log", "exec:CMD" or "http:URL"`, RedactSpec(spec))
}

// headBuffer keeps the first max bytes written to it and discards the rest.
type headBuffer struct {
	max int
	buf []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string { return string(h.buf) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
