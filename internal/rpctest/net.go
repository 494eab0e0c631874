package rpctest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// maxFrame bounds what the test server and client accept.
const maxFrame = 16 << 20

// frameLenFunc returns the length of the frame at the start of b, 0 when
// more bytes are needed.
type frameLenFunc func(b []byte) int

// readFrames calls fn for each frame read from r until an error.
func readFrames(r io.Reader, frameLen frameLenFunc, fn func(frame []byte)) error {
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	for {
		for {
			n := frameLen(buf)
			if n <= 0 || n > len(buf) {
				if n > maxFrame {
					return fmt.Errorf("rpctest: frame of %d bytes", n)
				}
				break
			}
			frame := append([]byte(nil), buf[:n]...)
			buf = append(buf[:0], buf[n:]...)
			fn(frame)
		}
		k, err := r.Read(tmp)
		buf = append(buf, tmp[:k]...)
		if err != nil {
			return err
		}
	}
}

// Handler answers one request frame: the response (nil: none) and how long
// to wait before sending it.
type Handler func(frame []byte) (resp []byte, delay time.Duration)

// Serve accepts connections on addr and answers each frame with h, each in
// its own goroutine so that slow requests are answered after fast ones.
func Serve(addr string, frameLen frameLenFunc, h Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			var mu sync.Mutex
			_ = readFrames(c, frameLen, func(frame []byte) {
				go func() {
					resp, delay := h(frame)
					if resp == nil {
						return
					}
					time.Sleep(delay)
					mu.Lock()
					defer mu.Unlock()
					_, _ = c.Write(resp)
				}()
			})
		}()
	}
}

// Client sends frames on one connection and routes responses by id.
type Client struct {
	c       net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	waiting map[uint64]chan []byte
	order   []uint64 // ids in the order their responses arrived
	done    chan struct{}
	err     error
}

// Dial connects to addr; id extracts a response frame's id.
func Dial(addr string, frameLen frameLenFunc, id func(frame []byte) uint64) (*Client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	cl := &Client{c: c, waiting: map[uint64]chan []byte{}, done: make(chan struct{})}
	go func() {
		err := readFrames(c, frameLen, func(frame []byte) {
			k := id(frame)
			cl.mu.Lock()
			ch := cl.waiting[k]
			delete(cl.waiting, k)
			cl.order = append(cl.order, k)
			cl.mu.Unlock()
			if ch != nil {
				ch <- frame
			}
		})
		cl.mu.Lock()
		cl.err = err
		cl.mu.Unlock()
		close(cl.done)
	}()
	return cl, nil
}

// Send writes frame; when id is non-nil the returned channel gets the
// response with that id.
func (cl *Client) Send(frame []byte, id *uint64) (<-chan []byte, error) {
	var ch chan []byte
	if id != nil {
		ch = make(chan []byte, 1)
		cl.mu.Lock()
		cl.waiting[*id] = ch
		cl.mu.Unlock()
	}
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	_, err := cl.c.Write(frame)
	return ch, err
}

// Wait waits for a response channel.
func (cl *Client) Wait(ch <-chan []byte) ([]byte, error) {
	select {
	case f := <-ch:
		return f, nil
	case <-cl.done:
		return nil, fmt.Errorf("rpctest: connection ended: %v", cl.err)
	case <-time.After(10 * time.Second):
		return nil, errors.New("rpctest: no response in 10 s")
	}
}

// Call sends frame and waits for the response with id.
func (cl *Client) Call(frame []byte, id uint64) ([]byte, error) {
	ch, err := cl.Send(frame, &id)
	if err != nil {
		return nil, err
	}
	return cl.Wait(ch)
}

// Order returns the ids of responses in arrival order.
func (cl *Client) Order() []uint64 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]uint64(nil), cl.order...)
}

// Close closes the connection.
func (cl *Client) Close() error { return cl.c.Close() }

// concurrent sends the slow and fast frames back to back on cl and checks
// that the fast one's response arrives first (the server delays the slow one).
func (cl *Client) concurrent(slow []byte, slowID uint64, fast []byte, fastID uint64) error {
	chSlow, err := cl.Send(slow, &slowID)
	if err != nil {
		return err
	}
	chFast, err := cl.Send(fast, &fastID)
	if err != nil {
		return err
	}
	if _, err := cl.Wait(chFast); err != nil {
		return err
	}
	if _, err := cl.Wait(chSlow); err != nil {
		return err
	}
	order := cl.Order()
	if len(order) < 2 || order[len(order)-2] != fastID || order[len(order)-1] != slowID {
		return fmt.Errorf("rpctest: responses arrived in order %v, want %d before %d", order, fastID, slowID)
	}
	return nil
}
