package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

// binary is the jobrelay binary built for the tests that run it as a
// subprocess (signals, .env files, crashes).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobrelay-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "jobrelay")
	// Built as the Dockerfile builds it: static, with the version stamped.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-test -X main.commit=abc1234def",
		"-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build jobrelay:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runInProcess runs the CLI in this process with the given environment
// (nothing from the real one) and returns its exit status and output.
func runInProcess(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code = run(args, getenv, &out, &errOut)
	return code, out.String(), errOut.String()
}

// pipeline is a schema and stream for subprocess tests.
type pipeline struct {
	schema *testenv.Schema
	stream string
	env    []string
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	schema := testenv.NewSchema(t)
	rdb := testenv.NewRedis(t)
	stream := testenv.Stream(t, rdb)
	return &pipeline{schema: schema, stream: stream, env: []string{
		"DATABASE_URL=" + schema.URL,
		"REDIS_URL=" + testenv.RedisURL(),
		"JOB_REVIEW_QUEUE_NAME=" + stream,
		"METRICS_ADDR=",
		"LOG_FORMAT=json",
		"PATH=" + os.Getenv("PATH"),
	}}
}

// proc is a jobrelay subprocess whose JSON log lines are kept.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

// start runs the binary in dir with env and args.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	p.cmd.Stdout = &lockedWriter{mu: &p.mu, w: &p.raw}
	require.NoError(t, p.cmd.Start())
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
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of jobrelay %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
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

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// logged returns the log lines whose message contains msg.
func (p *proc) logged(msg string) []map[string]any {
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

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("jobrelay did not exit within %s:\n%s", timeout, p.output())
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	require.ErrorAs(p.t, p.err, &ee)
	return ee.ExitCode()
}

func (p *proc) signal(sig syscall.Signal) { require.NoError(p.t, p.cmd.Process.Signal(sig)) }

// runBinary runs the binary to completion and returns status and output.
func runBinary(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	p := start(t, dir, env, args...)
	return p.wait(2 * time.Minute), p.output()
}

func ctxT(t *testing.T) context.Context { return testenv.Context(t) }
