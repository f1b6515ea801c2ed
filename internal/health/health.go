// Package health serves a process's Prometheus metrics beside its liveness
// (/healthz) and readiness (/readyz) endpoints, on one listener.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// FallbackPorts is how many ports from a default address's (9090–9099 from
// :9090) Listen tries before it takes any free port: a predictable range
// for Prometheus file_sd when several processes share a host.
const FallbackPorts = 10

// ReadyTimeout bounds the checks of one /readyz request.
const ReadyTimeout = time.Second

// Server serves /metrics from its Registry, /healthz (the process is
// alive) and /readyz (every check passes within ReadyTimeout).
type Server struct {
	// Registry holds the metrics served, the Go and process collectors
	// included.
	Registry *prometheus.Registry

	checks []readyCheck
	pages  []page
}

// page is a handler served beside the endpoints (the dashboard).
type page struct {
	pattern string
	handler http.Handler
}

// readyCheck is one condition of /readyz.
type readyCheck struct {
	name  string
	check func(ctx context.Context) error
}

// NewServer returns a Server with a registry of the Go and process
// collectors.
func NewServer() *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{Registry: reg}
}

// Ready adds a condition of /readyz; a failing one is reported as
// "name: error". Add checks before serving.
func (s *Server) Ready(name string, check func(ctx context.Context) error) {
	s.checks = append(s.checks, readyCheck{name, check})
}

// Handle serves handler at pattern (an http.ServeMux pattern) beside the
// endpoints, such as the dashboard at "/ui/". Add pages before serving.
func (s *Server) Handle(pattern string, handler http.Handler) {
	s.pages = append(s.pages, page{pattern, handler})
}

// Handler serves /metrics, /healthz, /readyz and the pages added with
// Handle.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, p := range s.pages {
		mux.Handle(p.pattern, p.handler)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		var failed []string
		for _, c := range s.checks {
			if err := c.check(ctx); err != nil {
				failed = append(failed, c.name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, f := range failed {
				_, _ = fmt.Fprintln(w, f)
			}
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve serves Handler on ln until ctx is done, then shuts the server down
// (waiting up to 5 seconds for requests in flight). The returned function
// waits for it to stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener, logger *slog.Logger) (wait func()) {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("health: listener failed", slog.String("err", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return func() { <-done }
}

// Listen listens on addr. With fallback (addr is a default, not an address
// the user chose), an address in use is not an error: it tries the next
// ports of the same host, up to FallbackPorts in all, then any free port of
// that host.
func Listen(ctx context.Context, addr string, fallback bool) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err == nil || !fallback || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	host, portText, splitErr := net.SplitHostPort(addr)
	port, atoiErr := strconv.Atoi(portText)
	if splitErr != nil || atoiErr != nil {
		return nil, err
	}
	for p := port + 1; p < port+FallbackPorts && p <= 65535; p++ {
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
}

// ListenReason is what went wrong in a listen error ("address already in
// use"), without the "listen tcp …:" that a message naming the address
// already says.
func ListenReason(err error) string {
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return errno.Error() // "address already in use", "permission denied"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}

// SamePort reports whether the listener got the port addr asked for.
func SamePort(addr string, got net.Addr) bool {
	_, port, _ := net.SplitHostPort(addr)
	tcp, ok := got.(*net.TCPAddr)
	return ok && port == strconv.Itoa(tcp.Port)
}
