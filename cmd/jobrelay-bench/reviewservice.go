package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"
)

// reviewService is the benchmark's HTTP review service, for the `http:`
// handler: it answers 204 and notes when each job's request arrived.
type reviewService struct {
	url string
	srv *http.Server
	// onJob, if set, is told of every request (retries included), before
	// the review's own time.
	onJob func(title string, at time.Time)
	took  time.Duration // how long each review takes

	mu      sync.Mutex
	arrived map[string]time.Time // job_id → first request
}

// startReviewService listens on a free port of the loopback. Each review
// takes took; onJob, if not nil, is told of each request.
func startReviewService(ctx context.Context, took time.Duration, onJob func(title string, at time.Time)) (*reviewService, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &reviewService{url: "http://" + ln.Addr().String() + "/review", onJob: onJob, took: took, arrived: map[string]time.Time{}}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		var j struct {
			ID    string `json:"job_id"`
			Title string `json:"title"`
		}
		_ = json.NewDecoder(r.Body).Decode(&j)
		s.mu.Lock()
		if _, ok := s.arrived[j.ID]; !ok {
			s.arrived[j.ID] = now
		}
		s.mu.Unlock()
		if s.onJob != nil {
			s.onJob(j.Title, now)
		}
		time.Sleep(s.took)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// handler is the HANDLER setting that sends jobs to it.
func (s *reviewService) handler() string { return "HANDLER=http:" + s.url }

// count is how many jobs have arrived.
func (s *reviewService) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrived)
}

// since is how long after committed[id] each job arrived, in milliseconds.
func (s *reviewService) since(committed map[string]time.Time) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]float64, 0, len(committed))
	for id, t := range committed {
		out = append(out, float64(s.arrived[id].Sub(t).Microseconds())/1000)
	}
	return out
}

func (s *reviewService) close() { _ = s.srv.Close() }
