package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build builds the main package pkg into the file out, static, as the
// Dockerfile builds it, with the linker flags ldflags (may be empty). The
// go command's output goes to stderr.
func Build(ctx context.Context, out, pkg, ldflags string, stderr io.Writer) error {
	args := []string{"build", "-trimpath"}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	build := exec.CommandContext(ctx, "go", append(args, "-o", out, pkg)...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	return nil
}

// ProcessEnv is the environment of a jobrelay process of a pipeline: its
// database (a search_path URL), Redis and stream, JSON logs, no metrics
// listener, and PATH; extra variables (NAME=value) come last and win.
func ProcessEnv(databaseURL, redisURL, stream string, extra ...string) []string {
	return append([]string{
		"DATABASE_URL=" + databaseURL,
		"REDIS_URL=" + redisURL,
		"JOB_REVIEW_QUEUE_NAME=" + stream,
		"METRICS_ADDR=",
		"LOG_FORMAT=json",
		"PATH=" + os.Getenv("PATH"),
	}, extra...)
}

// Process is a subprocess of one test whose JSON log lines (on stderr) are
// kept; it is killed when the test ends if it still runs.
type Process struct {
	// Cmd is the running command, for signals the methods do not cover.
	Cmd *exec.Cmd

	t    testing.TB
	done chan struct{}
	err  error

	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

// StartProcess runs binary in dir with exactly env and args. When the test
// fails, its output goes to the test log.
func StartProcess(t testing.TB, binary, dir string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, Cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.Cmd.Dir = dir
	p.Cmd.Env = env
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr of %s: %v", binary, err)
	}
	p.Cmd.Stdout = &lockedWriter{mu: &p.mu, w: &p.raw}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var m map[string]any
			p.mu.Lock()
			if json.Unmarshal([]byte(line), &m) == nil {
				p.lines = append(p.lines, m)
			}
			p.raw.WriteString(line + "\n")
			p.mu.Unlock()
		}
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", binary, strings.Join(args, " "), p.Output())
		}
	})
	return p
}

// RunProcess runs binary to completion (two minutes at most) and returns
// its exit status and output.
func RunProcess(t testing.TB, binary, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	p := StartProcess(t, binary, dir, env, args...)
	return p.Wait(2 * time.Minute), p.Output()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Output is what the process wrote so far, stdout and stderr.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// Logged returns the JSON log lines whose message contains msg.
func (p *Process) Logged(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		if m, _ := l["msg"].(string); strings.Contains(m, msg) {
			out = append(out, l)
		}
	}
	return out
}

// Wait waits for the process to exit and returns its exit status; the test
// fails if it does not exit within timeout.
func (p *Process) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s:\n%s", p.Cmd.Path, timeout, p.Output())
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		p.t.Fatalf("wait for %s: %v", p.Cmd.Path, p.err)
	}
	return ee.ExitCode()
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.Cmd.Path, err)
	}
}
