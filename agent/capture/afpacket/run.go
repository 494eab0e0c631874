package afpacket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// maxBlocksPerTurn bounds how many blocks one interface is read before the
// others get a turn, so a busy interface cannot starve a quiet one.
const maxBlocksPerTurn = 4

// Run reads frames until ctx is done or Close is called, calling fn for
// each. All interfaces are read by the one goroutine that called Run, so fn
// is never called concurrently and needs no locking; it must not block for
// long (the rings fill meanwhile) and must not keep the Frame or its Data
// after it returns. Run returns ctx.Err() when the context ends, ErrClosed
// after Close, or the error that stopped it. Only one Run may be active,
// and fn must not call Close (Close waits for Run to return).
func (c *Capture) Run(ctx context.Context, fn func(*Frame)) error {
	return c.RunTick(ctx, fn, 0, nil)
}

// RunTick is Run, and also calls tick(now) on the same goroutine about every
// every (and at least every PollTimeout when every is 0 or shorter), whether
// or not frames arrive: the hook for time-driven work (expiring
// connections, flushing) that must not race with fn.
func (c *Capture) RunTick(ctx context.Context, fn func(*Frame), every time.Duration, tick func(time.Time)) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.running:
		c.mu.Unlock()
		return errors.New("afpacket: Run already active")
	}
	c.running = true
	done := make(chan struct{})
	c.done = done
	handles := append([]*handle(nil), c.handles...)
	wake := c.wake
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.done = nil
		c.mu.Unlock()
		close(done)
	}()

	// Context cancellation wakes poll through the eventfd. Run waits for
	// a wake-up already under way before returning, so that it never
	// writes to the eventfd after Close has closed it (or to a reused fd).
	fired := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() { signalWake(wake); close(fired) })
	defer func() {
		if !stopWatch() {
			<-fired
		}
	}()

	if every <= 0 {
		every = c.cfg.PollTimeout
	}
	var (
		f         Frame
		fds       []unix.PollFd
		lastTick  = time.Now()
		nextScan  = time.Now().Add(c.cfg.Rescan)
		rescanOn  = len(c.cfg.Interfaces) == 0 && c.cfg.Rescan > 0
		timeoutMS = int(max(1, c.cfg.PollTimeout.Milliseconds()))
	)
	for {
		if err := c.stopped(ctx); err != nil {
			return err
		}
		busy := false
		for _, h := range handles {
			for n := 0; n < maxBlocksPerTurn && h.ready(); n++ {
				h.readBlock(&f, fn)
				busy = true
			}
		}
		now := time.Now()
		if tick != nil && now.Sub(lastTick) >= every {
			tick(now)
			lastTick = now
		}
		if rescanOn && now.After(nextScan) {
			handles = c.rescan(handles)
			nextScan = now.Add(c.cfg.Rescan)
		}
		if busy {
			continue
		}
		fds = fds[:0]
		fds = append(fds, unix.PollFd{Fd: int32(wake), Events: unix.POLLIN})
		for _, h := range handles {
			fds = append(fds, unix.PollFd{Fd: int32(h.fd), Events: unix.POLLIN | unix.POLLERR})
		}
		wait := timeoutMS
		if tick != nil {
			wait = min(wait, int(max(1, (every-now.Sub(lastTick)).Milliseconds())))
		}
		if _, err := unix.Poll(fds, wait); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("afpacket: poll: %w", err)
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			drainWake(wake)
		}
		for i, h := range handles {
			if fds[i+1].Revents&unix.POLLERR == 0 {
				continue
			}
			// A socket whose device went down or away reports an error
			// (ENETDOWN) until it is read; read it so poll does not spin,
			// and re-scan now.
			_, _ = unix.GetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			nextScan = time.Time{}
		}
	}
}

func (c *Capture) stopped(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// rescan opens interfaces that came up and closes those that went away or
// down. It runs on the Run goroutine, which owns the rings.
func (c *Capture) rescan(handles []*handle) []*handle {
	up, err := upInterfaces()
	if err != nil {
		c.mu.Lock()
		c.stats.OpenErrors++
		c.mu.Unlock()
		return handles
	}
	byIndex := make(map[int]net.Interface, len(up))
	for _, ifi := range up {
		byIndex[ifi.Index] = ifi
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := handles[:0]
	have := make(map[int]bool, len(handles))
	for _, h := range handles {
		if ifi, ok := byIndex[h.ifindex]; ok && ifi.Name == h.name {
			kept = append(kept, h)
			have[h.ifindex] = true
			continue
		}
		hs := h.snapshot()
		c.retired.add(&hs)
		_ = h.close()
		c.stats.Closed++
	}
	for _, ifi := range up {
		if have[ifi.Index] {
			continue
		}
		if len(kept) >= MaxInterfaces {
			c.stats.Skipped++
			continue
		}
		h, err := openHandle(ifi, &c.cfg, c.filter)
		if err != nil {
			c.stats.OpenErrors++
			continue
		}
		kept = append(kept, h)
		c.stats.Opened++
	}
	c.handles = append(c.handles[:0], kept...)
	return append([]*handle(nil), kept...)
}
