package relay

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrelay/jobrelay/internal/backoff"
	"github.com/jobrelay/jobrelay/internal/stream"
)

// Backpressure holds the relay back while consumers lag or Redis fills up:
// the backlog then waits in PostgreSQL, where it is durable, instead of
// filling Redis.
//
// Bounds. Before each claim a worker reserves room for its batch: at most
// BatchSize, at most MaxStreamLag minus the lag, at most the entries the
// memory left under MaxMemoryRatio is estimated to hold. Room reserved is
// counted against the limits until the next reading of the pressure sees
// the entries in the stream, so workers claiming side by side never pass a
// bound between two readings. The relay reads the pressure before every
// claim once it is past half of a limit, and otherwise at least every
// pressureInterval. Across replicas each relay knows only its own
// reservations: near a limit N replicas can pass it by the batches they
// claim at the same moment, at most (N-1) × BatchSize.
//
// Memory. An entry is estimated at twice its field values plus 64 bytes
// (its ID, the listpack's overhead, the dedup record while in flight),
// averaged over recent batches: claims shrink as Redis nears the limit,
// which bounds the overshoot to the error of that estimate, not to
// batches. Over the limit the relay first trims what every group is done
// with (consumers trim too, but only while results arrive), and pauses only
// if that does not make room.
//
// Health. A relay paused for stalledAfter without progress (no group read
// anything, no memory was freed, nothing was trimmed) cannot resume by
// itself, and Ready says so.
type pressureState struct {
	sync.Mutex
	last      stream.Pressure // the last reading
	readAt    time.Time
	accounted int64   // entries reserved since the last reading: in flight, or published and not in it
	inflight  int64   // entries reserved and not yet published
	entrySize float64 // estimated bytes an entry costs Redis
	sized     bool    // entrySize comes from batches, not the guess
	trimmedAt time.Time
	trimLog   stream.TrimLog

	paused bool
	best   stream.Pressure // while paused, the best reading since the last progress
	// pause describes the pause for Ready, which must not wait for the
	// lock while a reading waits for a stalled Redis; nil when not paused.
	pause atomic.Pointer[pauseInfo]
}

// pauseInfo is a pause, as Ready reports it.
type pauseInfo struct {
	since    time.Time
	progress time.Time // last progress
	reason   string
	memory   bool // held back by Redis memory, not by lag
}

// progressed records progress of the pause. Called with the lock held.
func (ps *pressureState) progressed() {
	ps.best = ps.last
	if p := ps.pause.Load(); p != nil {
		ps.pause.Store(&pauseInfo{since: p.since, progress: time.Now(), reason: p.reason, memory: p.memory})
	}
}

// entrySizeGuess is the estimate of an entry's bytes before the first
// batch: sample jobs cost about this much.
const entrySizeGuess = 512

// pressureOn says whether any limit is set.
func (r *Relay) pressureOn() bool { return r.cfg.MaxStreamLag != -1 || r.cfg.MaxMemoryRatio != -1 }

// reservation is the room a worker holds for its batch (see pressureState).
type reservation struct {
	r    *Relay // nil without backpressure: nothing to account for
	held int    // the batch's size limit, less what was given back or published
}

// giveBack returns room the batch will not use.
func (res *reservation) giveBack(n int) {
	if n <= 0 {
		return
	}
	res.held -= n
	if res.r == nil {
		return
	}
	ps := &res.r.pressure
	ps.Lock()
	ps.accounted -= int64(n)
	ps.inflight -= int64(n)
	ps.Unlock()
}

// published records that n entries (may) have reached the stream, with
// bytes of field values in all: they stay counted until the next reading.
func (res *reservation) published(n, bytes int) {
	if n <= 0 {
		return
	}
	res.held -= n
	if res.r == nil {
		return
	}
	ps := &res.r.pressure
	ps.Lock()
	ps.inflight -= int64(n)
	// A moving average, so that a few huge jobs do not starve the next
	// claims; the first batch replaces the guess.
	size := 2*float64(bytes)/float64(n) + 64
	if ps.sized {
		size = 0.7*ps.entrySize + 0.3*size
	}
	ps.entrySize, ps.sized = size, true
	ps.Unlock()
}

// release gives back whatever the batch did not publish.
func (res *reservation) release() { res.giveBack(res.held) }

// reserve waits until there is room for a batch and reserves it. It returns
// nil when ctx is done first.
func (r *Relay) reserve(ctx context.Context) (*reservation, error) {
	if !r.pressureOn() {
		return &reservation{held: r.cfg.BatchSize}, nil
	}
	for {
		n, err := r.tryReserve(ctx)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return &reservation{r: r, held: n}, nil
		}
		if !backoff.Sleep(ctx, r.cfg.pressureInterval) {
			return nil, nil //nolint:nilnil // stopping: no reservation, and nothing went wrong
		}
	}
}

// reserveOnReading reserves a full batch on the last reading alone, without
// waiting and without Redis: nil if a reading is due, the relay is near a
// limit or paused, or another worker holds the state (it may be reading).
// A cycle calls it inside its transaction, to claim the next batch with its
// COMMIT; reserve, outside any transaction, decides the rest.
func (r *Relay) reserveOnReading() *reservation {
	if !r.pressureOn() {
		return &reservation{held: r.cfg.BatchSize}
	}
	ps := &r.pressure
	if !ps.TryLock() {
		return nil
	}
	defer ps.Unlock()
	if ps.paused || r.needsReading() {
		return nil
	}
	if room, _ := r.room(); room < int64(r.cfg.BatchSize) {
		return nil
	}
	n := int64(r.cfg.BatchSize)
	ps.accounted += n
	ps.inflight += n
	return &reservation{r: r, held: r.cfg.BatchSize}
}

// tryReserve reserves room for a batch, or pauses the relay if there is
// none. Workers share the state: the change to paused and back is logged
// once.
func (r *Relay) tryReserve(ctx context.Context) (int, error) {
	ps := &r.pressure
	ps.Lock()
	defer ps.Unlock()
	if r.needsReading() {
		if err := r.readPressure(ctx); err != nil || ctx.Err() != nil {
			return 0, err
		}
	}
	room, memory := r.room()
	if memory && room < int64(r.cfg.BatchSize) && time.Since(ps.trimmedAt) >= r.cfg.pressureInterval {
		// Memory is what limits: free what every group is done with
		// before holding back.
		if n := r.trimLocked(ctx); n > 0 {
			if err := r.readPressure(ctx); err != nil || ctx.Err() != nil {
				return 0, err
			}
			room, _ = r.room()
			ps.progressed()
		}
	}
	if ps.paused {
		if room < r.resumeRoom() {
			r.noteProgress()
			return 0, nil
		}
		ps.paused = false
		since := ps.pause.Swap(nil).since
		r.log.InfoContext(ctx, "relay: consumers caught up; resuming",
			slog.Int64("lag", ps.last.Lag), slog.String("group", ps.last.LagGroup),
			slog.Int64("used_memory", ps.last.UsedMemory), slog.Duration("paused_for", time.Since(since)))
		r.m.Paused.Set(0) // after the line: whoever sees the gauge finds the line written
	} else if room <= 0 {
		ps.paused, ps.best = true, ps.last
		reason := r.pauseReason()
		lag := ps.last.Lag + ps.accounted
		ps.pause.Store(&pauseInfo{since: time.Now(), progress: time.Now(), reason: reason,
			memory: r.cfg.MaxStreamLag < 0 || lag < r.cfg.MaxStreamLag})
		r.log.WarnContext(ctx, "relay: pausing: "+reason+"; the backlog waits in PostgreSQL",
			slog.Int64("lag", ps.last.Lag+ps.accounted), slog.String("group", ps.last.LagGroup),
			slog.Int64("used_memory", ps.last.UsedMemory), slog.Int64("maxmemory", ps.last.MaxMemory))
		r.m.Paused.Set(1) // after the line, as above
		r.m.BackpressurePauses.Inc()
		return 0, nil
	}
	n := min(int64(r.cfg.BatchSize), room)
	ps.accounted += n
	ps.inflight += n
	return int(n), nil
}

// needsReading says whether the last reading is too old, or the relay too
// near a limit to go on it. Called with the lock held.
func (r *Relay) needsReading() bool {
	ps := &r.pressure
	if ps.readAt.IsZero() || ps.paused || time.Since(ps.readAt) >= r.cfg.pressureInterval {
		return true
	}
	if r.cfg.MaxStreamLag >= 0 && 2*(ps.last.Lag+ps.accounted) >= r.cfg.MaxStreamLag {
		return true
	}
	if limit := r.memoryLimit(); limit > 0 && 2*(float64(ps.last.UsedMemory)+float64(ps.accounted)*ps.entrySize) >= limit {
		return true
	}
	return false
}

// readPressure takes a new reading. What was reserved and not yet
// published is not in it. Called with the lock held.
func (r *Relay) readPressure(ctx context.Context) error {
	ps := &r.pressure
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CycleTimeout)
	p, err := stream.ReadPressure(cctx, r.rdb, stream.Partitions(r.cfg.Stream, r.cfg.Partitions)...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil //nolint:nilerr // stopping: the reading failed because of it
		}
		r.m.Errors.WithLabelValues("pressure").Inc()
		return fmt.Errorf("check backpressure: %w", err)
	}
	ps.last, ps.readAt, ps.accounted = p, time.Now(), ps.inflight
	if !ps.sized {
		ps.entrySize = entrySizeGuess
	}
	return nil
}

// memoryLimit is the bytes of Redis memory the relay may fill, or 0 for no
// limit. Called with the lock held.
func (r *Relay) memoryLimit() float64 {
	if r.cfg.MaxMemoryRatio <= 0 || r.pressure.last.MaxMemory <= 0 {
		return 0
	}
	return r.cfg.MaxMemoryRatio * float64(r.pressure.last.MaxMemory)
}

// room is the number of entries the relay may add now: at most BatchSize,
// less as the lag or memory nears its limit. memory says whether memory
// alone would keep a claim below BatchSize. Called with the lock held.
func (r *Relay) room() (room int64, memory bool) {
	ps := &r.pressure
	room = int64(r.cfg.BatchSize)
	if r.cfg.MaxStreamLag >= 0 {
		room = min(room, r.cfg.MaxStreamLag-ps.last.Lag-ps.accounted)
	}
	if limit := r.memoryLimit(); limit > 0 {
		free := limit - float64(ps.last.UsedMemory) - float64(ps.accounted)*ps.entrySize
		m := int64(free / ps.entrySize)
		room, memory = min(room, m), m < int64(r.cfg.BatchSize)
	}
	return room, memory
}

// resumeRoom is the room a paused relay waits for: a quarter of a batch
// (or of MaxStreamLag, if smaller), so that consumers reading one entry at
// a time do not make it claim one job at a time, pausing in between.
func (r *Relay) resumeRoom() int64 {
	n := int64(r.cfg.BatchSize)
	if r.cfg.MaxStreamLag >= 0 {
		n = min(n, r.cfg.MaxStreamLag)
	}
	return max(1, n/4)
}

// pauseReason says which limit holds the relay back. The lag it gives
// counts the relay's own entries on their way. Called with the lock held.
func (r *Relay) pauseReason() string {
	ps := &r.pressure
	p := &ps.last
	lag := p.Lag + ps.accounted
	switch {
	case r.cfg.MaxStreamLag < 0 || lag < r.cfg.MaxStreamLag:
		return fmt.Sprintf("Redis uses %d of %d bytes of maxmemory (MaxMemoryRatio %g)", p.UsedMemory, p.MaxMemory, r.cfg.MaxMemoryRatio)
	case p.LagGroup == "":
		return fmt.Sprintf("no consumer group reads the stream, which holds %d entries (MaxStreamLag %d)", lag, r.cfg.MaxStreamLag)
	default:
		return fmt.Sprintf("group %s is %d entries behind (MaxStreamLag %d)", p.LagGroup, lag, r.cfg.MaxStreamLag)
	}
}

// noteProgress records whether the reading of a paused relay is better
// than any since its last progress: a group read entries, or memory was
// freed. Called with the lock held.
func (r *Relay) noteProgress() {
	ps := &r.pressure
	margin := max(64<<10, ps.last.MaxMemory/100) // INFO memory moves a little by itself
	if ps.last.Lag < ps.best.Lag || ps.last.UsedMemory+margin < ps.best.UsedMemory {
		ps.progressed()
	}
}

// stalled reports a relay paused for longer than stalledAfter without
// progress: neither the consumers nor trimming make room, so it cannot
// resume by itself.
func (r *Relay) stalled() error {
	p := r.pressure.pause.Load()
	if p == nil || time.Since(p.progress) < r.cfg.stalledAfter {
		return nil
	}
	return fmt.Errorf("relay: paused for %s without progress: %s",
		time.Since(p.since).Round(time.Millisecond), p.reason)
}

// trim removes the entries every group is done with: on the poll tick, so
// that the stream shrinks even when no consumer trims (consumers trim only
// while results arrive, and on their own timer).
func (r *Relay) trim(ctx context.Context) {
	r.pressure.Lock()
	defer r.pressure.Unlock()
	r.trimLocked(ctx)
}

// trimLocked trims and returns how many entries went. A failure is counted
// and logged when trimming starts failing. Called with the lock held.
func (r *Relay) trimLocked(ctx context.Context) int64 {
	ps := &r.pressure
	ps.trimmedAt = time.Now()
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CycleTimeout)
	var n int64
	var err error
	for _, s := range stream.Partitions(r.cfg.Stream, r.cfg.Partitions) {
		var k int64
		k, err = stream.Trim(cctx, r.rdb, s)
		n += k
		if err != nil {
			break
		}
	}
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.m.Errors.WithLabelValues("trim").Inc()
			ps.trimLog.Failed(ctx, r.log, "relay", err)
		}
		return 0
	}
	ps.trimLog.OK(ctx, r.log, "relay")
	if n > 0 {
		r.m.Trimmed.Add(float64(n))
		r.log.DebugContext(ctx, "relay: trimmed the stream", slog.Int64("num_trimmed", n))
	}
	return n
}
