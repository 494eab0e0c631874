package tcpevents

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/sightline-io/sightline/agent/capture/bpfevent"
)

// Stats are the tracer's counters since New.
type Stats struct {
	// Kernel counters, summed over CPUs.
	RingbufFull  uint64 // events lost: ring buffer full
	OwnerFail    uint64 // owner not recorded (map update failed): later events unattributed
	ListenerFail uint64 // listener owner not recorded: its connections unattributed
	// User space.
	EventsRead   uint64
	DecodeErrors uint64
}

type userStats struct {
	eventsRead, decodeErrors atomic.Uint64
}

// Stats reads the kernel and user-space counters. A kernel counter that
// cannot be read is logged and left at 0.
func (t *Tracer) Stats() Stats {
	s := Stats{EventsRead: t.stats.eventsRead.Load(), DecodeErrors: t.stats.decodeErrors.Load()}
	var perCPU []uint64
	// Order of enum tcp_counter in bpf/tcp_events.h.
	for i, d := range []*uint64{&s.RingbufFull, &s.OwnerFail, &s.ListenerFail} {
		if err := t.counts.Lookup(uint32(i), &perCPU); err != nil {
			t.log.Warn("tcpevents: read kernel counter", "index", i, "err", err)
			continue
		}
		for _, v := range perCPU {
			*d += v
		}
	}
	return s
}

// Run reads events until ctx is done or the Tracer is closed (both return
// nil), calling fn on this goroutine. The *Event is reused: copy it to keep
// it. A slow fn fills the ring buffer and the kernel drops (Stats).
func (t *Tracer) Run(ctx context.Context, fn func(*Event)) error {
	stop := context.AfterFunc(ctx, func() {
		if err := t.reader.Flush(); err != nil {
			t.log.Warn("tcpevents: wake ring buffer reader", "err", err)
		}
	})
	defer stop()
	comms := bpfevent.NewCommCache(bpfevent.CommCacheSize)
	var (
		rec ringbuf.Record
		ev  Event
	)
	t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
	for {
		if err := t.reader.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, os.ErrDeadlineExceeded):
				if ctx.Err() != nil {
					return nil
				}
				t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
				continue
			case errors.Is(err, ringbuf.ErrClosed):
				return nil
			}
			return fmt.Errorf("read tcp events ring buffer: %w", err)
		}
		t.stats.eventsRead.Add(1)
		if err := decodeEvent(rec.RawSample, &ev, t.clock.Wall, comms.Get); err != nil {
			t.stats.decodeErrors.Add(1)
			t.log.Debug("tcpevents: bad event", "err", err)
			continue
		}
		fn(&ev)
	}
}
