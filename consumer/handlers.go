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

	"github.com/jobrelay/jobrelay/db"
)

// LogHandler logs each job, as the old poller's process_job_review did, and
// succeeds. It is the default handler: it shows the pipeline working before
// a real review service is plugged in. Each field is logged up to
// maxLoggedField bytes (see truncateField), so a job with a megabyte title
// does not make a megabyte log line.
func LogHandler(logger *slog.Logger) Handler {
	return HandlerFunc(func(ctx context.Context, job Job) error {
		logger.InfoContext(ctx, "Processing job review",
			slog.String("job_id", truncateField(job.ID)), slog.String("title", truncateField(job.Title)),
			slog.String("company", truncateField(job.Company)), slog.String("site", truncateField(job.Site)),
			slog.String("job_url", truncateField(job.URL)), slog.String("task_id", truncateField(job.TaskID)),
			slog.Int("attempt", job.Attempt), slog.Int64("delivery", job.Delivery))
		return nil
	})
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
// into last_error.
const stderrTail = 1024

// ExecHandler runs a command for each job, through "sh -c", with the job as
// JSON on stdin (one line). Exit status 0 is success; otherwise the job
// fails with the tail of stderr as its error. When the handler's context
// ends (HandlerTimeout, shutdown) the command and its children are killed.
// Stdout is logged at Debug.
func ExecHandler(command string, logger *slog.Logger) Handler {
	return HandlerFunc(func(ctx context.Context, job Job) error {
		payload, err := json.Marshal(job)
		if err != nil {
			return fmt.Errorf("encode job: %w", err)
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", command)
		cmd.Stdin = bytes.NewReader(append(payload, '\n'))
		var stdout bytes.Buffer
		stderr := &tailBuffer{max: stderrTail}
		cmd.Stdout, cmd.Stderr = &stdout, stderr
		// Kill the whole process group: sh and what it started.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		err = cmd.Run()
		if stdout.Len() > 0 {
			logger.DebugContext(ctx, "consumer: handler output", slog.String("job_id", job.ID),
				slog.String("stdout", strings.TrimSpace(stdout.String())))
		}
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("command %q killed: %w", command, ctxErr)
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return fmt.Errorf("command %q: %w", command, err)
		}
		return fmt.Errorf("command %q: %w: %s", command, err, msg)
	})
}

// HTTPHandler POSTs each job as JSON to url. A 2xx status is success;
// any other status, or no answer before the handler's context ends, is a
// failure, with the status and the start of the body as its error.
//
// Redirects are not followed: a 3xx status fails the delivery, with the
// status and the Location in the error. Following one could turn the POST
// into a GET (301, 302 and 303 do) that a server answers 200 without
// reviewing anything. client is copied, not changed; nil means a default
// client.
func HTTPHandler(target string, client *http.Client) Handler {
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return HandlerFunc(func(ctx context.Context, job Job) error {
		payload, err := json.Marshal(job)
		if err != nil {
			return fmt.Errorf("encode job: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
		if err != nil {
			return fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", job.ID+":"+fmt.Sprint(job.Attempt))
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("POST %s: %w", db.RedactURL(target), err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, stderrTail))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode/100 == 3:
			loc := resp.Header.Get("Location")
			if loc == "" {
				loc = "(none)"
			} else {
				loc = db.RedactURL(loc)
			}
			return fmt.Errorf("POST %s: %s, redirect to %s not followed (point the handler at the final URL)",
				db.RedactURL(target), resp.Status, loc)
		}
		return fmt.Errorf("POST %s: %s: %s", db.RedactURL(target), resp.Status, strings.TrimSpace(string(body)))
	})
}

// ParseHandler builds a built-in handler from its name on the command line:
// "log", "exec:CMD" or "http:URL", where URL is an http:// or https://
// URL (given alone, it is understood as "http:URL").
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
		target := strings.TrimPrefix(spec, "http:")
		if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
			target = spec // the URL alone is fine too
		}
		u, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("http handler: invalid URL %s", db.RedactURL(target))
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf(`http handler needs an http(s) URL, as in "http:http://localhost:8000/review", got %q`, db.RedactURL(target))
		}
		return HTTPHandler(target, nil), nil
	}
	return nil, fmt.Errorf(`unknown handler %q: want "log", "exec:CMD" or "http:URL"`, spec)
}

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
