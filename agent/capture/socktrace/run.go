package socktrace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/bpfevent"
)

// ConnInfo describes a connection seen at connect/accept exit.
type ConnInfo struct {
	ConnID uint64 // same ConnID as the connection's Segments
	Tuple  capture.Tuple
	Role   Role
	PID    uint32
	TID    uint32
	FD     int32
	Comm   string
	Time   time.Time
}

// Handler receives decoded events on Run's goroutine. A slow handler
// fills the ring buffer and the kernel drops (counted in Stats); the traced
// application is never blocked.
type Handler interface {
	// Segment gets one syscall's payload. The *Segment and its Data are
	// reused for the next event: copy what must outlive the call.
	Segment(*capture.Segment)
	// Closed reports close(2) of a socket previously seen.
	Closed(capture.Closed)
	// ConnOpened reports a successful connect (client) or accept (server).
	ConnOpened(ConnInfo)
	// ProcessExec and ProcessExit let caches keyed by pid be invalidated.
	ProcessExec(pid uint32)
	ProcessExit(pid uint32)
	// ProcessFork reports a new process (fork without exec yet): it shares
	// its parent's mappings. Only sent while TLS capture is on.
	ProcessFork(parent, child uint32)
}

// Stats are the tracer's counters since New.
type Stats struct {
	// Kernel counters, summed over CPUs.
	RingbufFull      uint64 // events lost: ring buffer full
	ScratchMiss      uint64 // per-CPU scratch unavailable: event lost
	ActiveUpdateFail uint64 // syscall args not stashed at enter: event lost
	SockStateFail    uint64 // no per-socket state: event without conn_uid/cap_seq
	ThreadStateFail  uint64 // no per-thread state: syscall_trace_id chain broken
	PayloadReadFail  uint64 // payload prefix not (fully) read
	ArgsReadFail     uint64 // msghdr/mmsghdr/sockaddr not read: event lost or peer unknown
	IOVTruncated     uint64 // more iovecs than walked: payload prefix short
	L7Skipped        uint64 // data events not sent: the socket is not parseable (TLS, SSH, unknown)
	EventLoops       uint64 // threads found interleaving requests of several server sockets: their ids are 0
	GoGMiss          uint64 // data events of Go processes whose running goroutine could not be read
	GoSpawn          uint64 // goroutines that started with their creator's trace id
	GoHandoff        uint64 // channel receives that took the sender's trace id
	GoHandoffAmbig   uint64 // channel values sent under two trace ids at once: not linked
	FutexHandoff     uint64 // threads that took a trace id through a futex wake
	TLSCallFail      uint64 // TLS calls not recorded at entry (map full): plaintext lost
	TLSNoSocket      uint64 // TLS plaintext whose socket was not found: not sent
	TLSL7Skipped     uint64 // TLS plaintext not sent: no parser claimed the connection
	FutexQueuedWait  uint64 // request threads waiting (timed) for a job they queued without a wake: handoffs held back
	// User-space counters.
	EventsRead   uint64
	Segments     uint64
	ConnOpened   uint64
	Closed       uint64
	Execs        uint64
	Exits        uint64
	Forks        uint64
	DecodeErrors uint64
}

// KernelDrops sums the kernel counters that mean a whole event was lost.
func (s Stats) KernelDrops() uint64 {
	return s.RingbufFull + s.ScratchMiss + s.ActiveUpdateFail + s.TLSCallFail + s.TLSNoSocket
}

type userStats struct {
	eventsRead, segments, connOpened, closed, execs, exits, forks, decodeErrors atomic.Uint64
}

// Stats reads the kernel counters and the user-space counters. A kernel
// counter that cannot be read is logged and left out of the sum.
func (t *Tracer) Stats() Stats {
	s := Stats{
		EventsRead:   t.stats.eventsRead.Load(),
		Segments:     t.stats.segments.Load(),
		ConnOpened:   t.stats.connOpened.Load(),
		Closed:       t.stats.closed.Load(),
		Execs:        t.stats.execs.Load(),
		Exits:        t.stats.exits.Load(),
		Forks:        t.stats.forks.Load(),
		DecodeErrors: t.stats.decodeErrors.Load(),
	}
	// Order of enum counter in bpf/socket_trace.h.
	dst := []*uint64{
		&s.RingbufFull, &s.ScratchMiss, &s.ActiveUpdateFail, &s.SockStateFail,
		&s.ThreadStateFail, &s.PayloadReadFail, &s.ArgsReadFail, &s.IOVTruncated,
		&s.L7Skipped, &s.EventLoops, &s.GoGMiss, &s.GoSpawn, &s.GoHandoff, &s.GoHandoffAmbig,
		&s.FutexHandoff, &s.TLSCallFail, &s.TLSNoSocket, &s.TLSL7Skipped, &s.FutexQueuedWait,
	}
	var perCPU []uint64
	for i, d := range dst {
		if err := t.maps.counters.Lookup(uint32(i), &perCPU); err != nil {
			t.log.Warn("socktrace: read kernel counter", "index", i, "err", err)
			continue
		}
		for _, v := range perCPU {
			*d += v
		}
	}
	return s
}

// Run reads events until ctx is done (returns nil) or the Tracer is closed
// (returns nil), calling h on this goroutine. Run must not be called
// concurrently with itself.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	// Flush, not SetDeadline, wakes a ReadInto blocked on a quiet ring:
	// SetDeadline takes the lock ReadInto holds while it waits.
	stop := context.AfterFunc(ctx, func() {
		if err := t.reader.Flush(); err != nil {
			t.log.Warn("socktrace: wake ring buffer reader", "err", err)
		}
	})
	defer stop()

	d := decoder{clock: t.clock, comms: bpfevent.NewCommCache(bpfevent.CommCacheSize)}
	var rec ringbuf.Record
	// The kernel wakes the reader only past WakeupBytes; the deadline
	// drains what waits below it every PollInterval.
	t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
	for {
		if err := t.reader.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, os.ErrDeadlineExceeded):
				if ctx.Err() != nil {
					d.flushCloses(h, time.Time{})
					return nil
				}
				d.flushCloses(h, time.Now())
				t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
				continue
			case errors.Is(err, ringbuf.ErrClosed):
				return nil
			}
			return fmt.Errorf("read socket trace ring buffer: %w", err)
		}
		t.stats.eventsRead.Add(1)
		if err := d.dispatch(rec.RawSample, h, &t.stats); err != nil {
			t.stats.decodeErrors.Add(1)
			t.log.Debug("socktrace: bad event", "err", err)
		}
		d.flushCloses(h, time.Now())
	}
}

// decoder turns records into handler calls, reusing one Segment.
type decoder struct {
	clock bpfevent.MonoClock
	comms *bpfevent.CommCache
	hdr   header
	seg   capture.Segment
	// lateCloses are closes of TLS plaintext streams held back: a TLS
	// call's return probe can fire after another thread or goroutine
	// closed the socket (its bytes left before), and its plaintext must
	// still reach the stream before the close does. [0] holds closes the
	// kernel saw no call pending for (a short safety delay), [1] those
	// with a call pending (EVENT_FLAG_TLS_PENDING: its thread may be
	// descheduled between the syscall and the return). Each is in due
	// order.
	lateCloses [2][]lateClose
	// pendingTuples holds the tuples of TLS streams whose close waits in
	// lateCloses[1]: their late plaintext's socket may be gone, and the
	// kernel sent the tuple with the close.
	pendingTuples map[uint64]capture.Tuple
}

type lateClose struct {
	c   capture.Closed
	due time.Time
}

const (
	tlsCloseDelay        = 100 * time.Millisecond
	tlsPendingCloseDelay = 2 * time.Second
	maxLateCloses        = 4096 // both queues together
)

// deferClose hands c on after tlsCloseDelay, or tlsPendingCloseDelay when
// a TLS call was pending (at once when too many wait). tuple, if known, is
// the stream's for its late plaintext.
func (d *decoder) deferClose(c capture.Closed, pending bool, tuple *capture.Tuple, h Handler, now time.Time) {
	if len(d.lateCloses[0])+len(d.lateCloses[1]) >= maxLateCloses {
		h.Closed(c)
		return
	}
	q, delay := 0, tlsCloseDelay
	if pending {
		q, delay = 1, tlsPendingCloseDelay
		if tuple != nil {
			if d.pendingTuples == nil {
				d.pendingTuples = make(map[uint64]capture.Tuple)
			}
			d.pendingTuples[c.ConnID] = *tuple
		}
	}
	d.lateCloses[q] = append(d.lateCloses[q], lateClose{c: c, due: now.Add(delay)})
}

// flushCloses hands on the deferred closes due by now (all of them when now
// is zero).
func (d *decoder) flushCloses(h Handler, now time.Time) {
	for q := range d.lateCloses {
		n := 0
		for _, lc := range d.lateCloses[q] {
			if !now.IsZero() && lc.due.After(now) {
				break // in due order: appended with a constant delay
			}
			h.Closed(lc.c)
			if q == 1 {
				delete(d.pendingTuples, lc.c.ConnID)
			}
			n++
		}
		if n > 0 {
			d.lateCloses[q] = append(d.lateCloses[q][:0], d.lateCloses[q][n:]...)
		}
	}
}

func (d *decoder) dispatch(b []byte, h Handler, st *userStats) error {
	payload, err := decodeHeader(b, &d.hdr)
	if err != nil {
		return err
	}
	hd := &d.hdr
	switch hd.typ {
	case eventData:
		tuple, err := hd.tuple()
		if err != nil {
			return err
		}
		d.seg = capture.Segment{
			Source:         capture.SourceEBPF,
			ConnID:         hd.connID(hd.flags&eventFlagTLS != 0),
			Tuple:          tuple,
			Dir:            capture.AtoB,
			Start:          d.clock.Wall(hd.enterNs),
			End:            d.clock.Wall(hd.exitNs),
			Data:           payload,
			Len:            int(hd.bytes),
			TCPSeq:         hd.tcpSeq,
			PID:            hd.pid,
			TID:            hd.tid,
			Comm:           d.comms.Get(hd.pid, hd.comm[:]),
			FD:             hd.fd,
			CapSeq:         hd.capSeq,
			SyscallTraceID: hd.traceID,
			Coroutine:      hd.goid,
			Socket:         hd.sock,
			ProtoHint:      hd.l7Hint,
			TLS:            hd.flags&eventFlagTLS != 0,
		}
		if t, ok := d.pendingTuples[d.seg.ConnID]; ok && d.seg.TLS {
			d.seg.Tuple = t
		}
		if hd.dir == dirIngress {
			d.seg.Dir = capture.BtoA
		}
		st.segments.Add(1)
		h.Segment(&d.seg)
	case eventConn:
		tuple, err := hd.tuple()
		if err != nil {
			return err
		}
		st.connOpened.Add(1)
		h.ConnOpened(ConnInfo{
			ConnID: hd.connID(false),
			Tuple:  tuple,
			Role:   Role(hd.dir),
			PID:    hd.pid,
			TID:    hd.tid,
			FD:     hd.fd,
			Comm:   d.comms.Get(hd.pid, hd.comm[:]),
			Time:   d.clock.Wall(hd.enterNs),
		})
	case eventClose:
		st.closed.Add(1)
		at := d.clock.Wall(hd.enterNs)
		h.Closed(capture.Closed{ConnID: hd.connID(false), Time: at})
		// The socket's TLS plaintext stream, if it had one, ends too.
		pending := hd.flags&eventFlagTLSPending != 0
		var tuple *capture.Tuple
		if pending {
			if t, err := hd.tuple(); err == nil {
				tuple = &t
			}
		}
		d.deferClose(capture.Closed{ConnID: hd.connID(true), Time: at}, pending, tuple, h, time.Now())
	case eventExec:
		d.comms.Forget(hd.pid)
		st.execs.Add(1)
		h.ProcessExec(hd.pid)
	case eventExit:
		d.comms.Forget(hd.pid)
		st.exits.Add(1)
		h.ProcessExit(hd.pid)
	case eventFork:
		st.forks.Add(1)
		h.ProcessFork(uint32(hd.fd), hd.pid)
	default:
		return fmt.Errorf("unknown event type %d", hd.typ)
	}
	return nil
}
