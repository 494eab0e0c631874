package tcpevents

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// recorder runs a Tracer and keeps a copy of every event.
type recorder struct {
	tr     *Tracer
	mu     sync.Mutex
	events []Event
	done   chan error
}

const maxRecorded = 200000

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("tcpevents tests need root (eBPF)")
	}
	tr, err := New(Config{WakeupBytes: -1})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r := &recorder{tr: tr, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r.done <- tr.Run(ctx, func(e *Event) {
			r.mu.Lock()
			if len(r.events) < maxRecorded {
				r.events = append(r.events, *e)
			}
			r.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// waitFor polls until match finds events or the timeout passes.
func (r *recorder) waitFor(t *testing.T, timeout time.Duration, desc string, match func([]Event) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		ok := match(r.events)
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events:\n%s", desc, r.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// find returns the events matching f.
func (r *recorder) find(f func(*Event) bool) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for i := range r.events {
		if f(&r.events[i]) {
			out = append(out, r.events[i])
		}
	}
	return out
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ""
	for i, e := range r.events {
		if i > 200 {
			s += "...\n"
			break
		}
		s += fmt.Sprintln(describe(&e))
	}
	return s
}

func describe(e *Event) string {
	return fmt.Sprintf("%-14s %s:%d -> %s:%d pid=%d comm=%q owner=%d %s->%s err=%d reason=%d sock=%#x",
		e.Type, e.Tuple.AIP, e.Tuple.APort, e.Tuple.BIP, e.Tuple.BPort, e.PID, e.Comm, e.Owner,
		StateName(e.OldState), StateName(e.NewState), e.Err, e.ResetReason, e.Sock)
}
