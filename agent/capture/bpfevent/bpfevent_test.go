package bpfevent

import (
	"testing"
	"time"
)

func TestCommCacheBounded(t *testing.T) {
	c := NewCommCache(2)
	for pid := uint32(1); pid <= 10; pid++ {
		if got := c.Get(pid, []byte("proc\x00junk")); got != "proc" {
			t.Fatalf("comm %q", got)
		}
		if c.Len() > 2 {
			t.Fatalf("cache grew to %d", c.Len())
		}
	}
	// exec changes comm: the cache must not return the old name.
	if got := c.Get(10, []byte("newname")); got != "newname" {
		t.Errorf("stale comm %q", got)
	}
	before := c.Len()
	c.Forget(10)
	if c.Len() != before-1 {
		t.Errorf("len %d after Forget, was %d", c.Len(), before)
	}
}

func TestMonoClock(t *testing.T) {
	c, err := NewMonoClock()
	if err != nil {
		t.Fatal(err)
	}
	// A monotonic reading taken now maps to about now.
	if d := time.Since(c.Wall(uint64(monoNow(t)))); d < -time.Second || d > time.Second {
		t.Fatalf("wall time off by %v", d)
	}
}
