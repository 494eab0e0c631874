// Package bpfevent holds what every decoder of kernel ring-buffer events
// needs: turning bpf_ktime_get_ns timestamps into wall-clock times, and
// interning the task names (comm) the kernel copies into each event.
package bpfevent

import (
	"bytes"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// MonoClock converts CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) to
// wall-clock time with an offset sampled once; NTP slews after that are
// not followed.
type MonoClock struct {
	OffsetNs int64 // wall - monotonic
}

// NewMonoClock samples the offset, taking the tightest of a few samples so
// its error is the smallest bracketing interval.
func NewMonoClock() (MonoClock, error) {
	best := time.Duration(1<<63 - 1)
	var c MonoClock
	for range 5 {
		var ts unix.Timespec
		before := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return c, fmt.Errorf("read monotonic clock: %w", err)
		}
		after := time.Now()
		if span := after.Sub(before); span < best {
			best = span
			c.OffsetNs = before.UnixNano() + int64(span)/2 - ts.Nano()
		}
	}
	return c, nil
}

// Wall returns the wall-clock time of a monotonic timestamp.
func (c MonoClock) Wall(mono uint64) time.Time { return time.Unix(0, c.OffsetNs+int64(mono)) }

// CommCacheSize is the usual bound of a CommCache.
const CommCacheSize = 4096

// CommCache interns comm strings per pid so steady traffic does not
// allocate a string per event. Bounded: cleared when full. Not safe for
// concurrent use.
type CommCache struct {
	max int
	m   map[uint32]string
}

// NewCommCache returns a cache of at most max pids.
func NewCommCache(max int) *CommCache {
	return &CommCache{max: max, m: make(map[uint32]string)}
}

// Get returns raw (a NUL-padded comm) as a string, the cached one when the
// pid's comm has not changed.
func (c *CommCache) Get(pid uint32, raw []byte) string {
	if i := bytes.IndexByte(raw, 0); i >= 0 {
		raw = raw[:i]
	}
	if s, ok := c.m[pid]; ok && s == string(raw) {
		return s
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	s := string(raw)
	c.m[pid] = s
	return s
}

// Forget drops a pid (exec or exit).
func (c *CommCache) Forget(pid uint32) { delete(c.m, pid) }

// Len reports how many pids are cached.
func (c *CommCache) Len() int { return len(c.m) }
