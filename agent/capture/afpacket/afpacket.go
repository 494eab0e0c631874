// Package afpacket captures live packets with Linux AF_PACKET sockets and
// TPACKET_V3 memory-mapped rings, one socket per interface.
//
// It talks to the kernel through golang.org/x/sys/unix directly rather than
// github.com/google/gopacket/afpacket: that package needs cgo (it includes
// <linux/if_packet.h> for the ring structures), which would make the agent's
// build depend on a C toolchain and kernel headers, while the TPACKET_V3
// structures it needs are a handful of fixed offsets that x/sys/unix already
// describes (Tpacket3Hdr, TpacketHdrV1, TpacketReq3, TpacketStatsV3). The
// socket filter is classic BPF assembled with golang.org/x/net/bpf; no
// libpcap is involved.
//
// # Snap length
//
// The default snap length is 1024 bytes from the start of the link header:
// Ethernet, VLAN, IP and TCP headers take at most ~140 bytes, leaving ~880
// bytes of payload, enough for an HTTP request line and the usual headers
// (including trace-context headers), a SQL statement's start, or a Redis /
// Kafka / DNS message header, which is what L7 inference and the session
// parsers need. The flow table needs only the headers (256 would do for it);
// a full 1514 would copy whole MTU-sized payloads that no parser reads, and
// on loopback or with GRO a packet can be up to 64 KiB, so some cut is
// needed anyway. Bytes beyond the snap length are reported as WireLen and
// become gaps in reassembly.
//
// # Loopback
//
// On lo every packet passes the packet taps twice: once on transmit
// (PACKET_OUTGOING) and once when it is received back (PACKET_HOST). The
// capture keeps the received (PACKET_HOST) copy: the lo socket sets
// PACKET_IGNORE_OUTGOING so the kernel does not even copy the transmit side
// into the ring, and frames marked outgoing on a loopback device are dropped
// in user space as well (DupLoopback in Stats) in case the option is not
// honoured. Frames on lo therefore always have Outgoing false.
//
// lo has hardware type ARPHRD_LOOPBACK but carries an Ethernet header with
// zero addresses, so its frames are decode.LinkTypeEthernet, like real NICs
// and veth. Devices without an Ethernet header (tun: ARPHRD_NONE, IP-in-IP,
// GRE, WireGuard, ...) are opened as SOCK_DGRAM sockets, which hand over the
// packet from its network header, and their frames are decode.LinkTypeRaw.
//
// # Observation point
//
// The capture reports where a frame was seen (Interface, Ifindex, Outgoing)
// and nothing else: whether a flow is "local" (both ends are this host), "c"
// (client is local) or "s" (server is local) needs the flow's direction
// (which end sent the SYN), which the flow and session layers know; see
// netcap.ObservationPoint.
package afpacket

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sightline-io/sightline/packet/decode"
)

// Defaults for Config's zero fields.
const (
	DefaultSnapLen      = 1024
	DefaultBlockSize    = 256 << 10 // 256 KiB
	DefaultNumBlocks    = 32        // 8 MiB per interface
	DefaultPollTimeout  = 100 * time.Millisecond
	DefaultBlockTimeout = 20 * time.Millisecond
	DefaultRescan       = 10 * time.Second
	// MaxInterfaces bounds how many interfaces one Capture opens.
	MaxInterfaces = 256
)

// Config selects interfaces and sizes the rings. Zero fields take defaults.
type Config struct {
	// Interfaces to capture on, by name. nil or empty: every interface that
	// is up, loopback included, re-scanned every Rescan for interfaces
	// that appear (or come up) and disappear.
	Interfaces []string
	// SnapLen is how many bytes of each frame are kept, from the start of
	// the link header.
	SnapLen int
	// BlockSize (a multiple of the page size; a power of two is best) and
	// NumBlocks size each interface's ring: BlockSize*NumBlocks bytes.
	BlockSize, NumBlocks int
	// Filter keeps only TCP and UDP over IPv4/IPv6 (and VLAN-tagged frames)
	// with a classic-BPF socket filter; the rest never reaches the ring.
	Filter bool
	// PollTimeout bounds how long Run sleeps in poll(2) with nothing to do
	// (Close and context cancellation wake it at once anyway; the tick
	// passed to RunTick is checked at least this often).
	PollTimeout time.Duration
	// BlockTimeout is how long the kernel keeps a partly filled block
	// before handing it over (TPACKET_V3 retire timeout; millisecond
	// granularity). It bounds the delivery latency at low packet rates.
	BlockTimeout time.Duration
	// Rescan is how often the interface list is re-read when Interfaces
	// is empty; negative disables re-scanning.
	Rescan time.Duration
}

func (c *Config) setDefaults() {
	if c.SnapLen <= 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.BlockSize <= 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.NumBlocks <= 0 {
		c.NumBlocks = DefaultNumBlocks
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.BlockTimeout <= 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.Rescan == 0 {
		c.Rescan = DefaultRescan
	}
}

func (c *Config) validate(pageSize int) error {
	switch {
	case c.BlockSize%pageSize != 0:
		return fmt.Errorf("afpacket: block size %d is not a multiple of the page size %d", c.BlockSize, pageSize)
	case c.BlockSize > 1<<30 || c.NumBlocks > 1<<16 || c.BlockSize*c.NumBlocks > 1<<31:
		return fmt.Errorf("afpacket: ring of %d blocks of %d bytes is too large", c.NumBlocks, c.BlockSize)
	case c.SnapLen > 1<<18:
		return fmt.Errorf("afpacket: snap length %d is too large", c.SnapLen)
	case c.SnapLen+blockOverhead > c.BlockSize:
		return fmt.Errorf("afpacket: snap length %d does not fit a %d-byte block", c.SnapLen, c.BlockSize)
	case len(c.Interfaces) > MaxInterfaces:
		return fmt.Errorf("afpacket: %d interfaces, at most %d", len(c.Interfaces), MaxInterfaces)
	}
	return nil
}

// Frame is one captured frame. Data aliases the ring and is valid only
// during the callback that receives the Frame (as is the Frame itself).
type Frame struct {
	Data      []byte    // captured bytes, at most SnapLen
	Time      time.Time // kernel receive/transmit timestamp (wall clock)
	WireLen   int       // frame length on the wire (>= len(Data))
	Ifindex   int
	Interface string
	Outgoing  bool // sent by this host (PACKET_OUTGOING); never set on loopback
	LinkType  decode.LinkType
	// VLAN is the 802.1Q TCI the kernel moved out of the frame (it is not
	// in Data); 0 when there was none.
	VLAN uint16
}

// IfaceStats counts one interface's capture.
type IfaceStats struct {
	Interface string
	Ifindex   int
	Frames    uint64 // frames handed to the callback
	Bytes     uint64 // wire bytes of those frames
	Captured  uint64 // captured bytes of those frames
	// Kernel counters (PACKET_STATISTICS), accumulated: packets that passed
	// the filter (including dropped ones), packets dropped because the ring
	// was full, and how often the ring froze for lack of a free block.
	KernelPackets uint64
	Drops         uint64
	FreezeQ       uint64
	DupLoopback   uint64 // transmit copies on loopback dropped in user space
	BadFrames     uint64 // frame headers that did not fit their block (dropped)
	LosingBlocks  uint64 // blocks flagged TP_STATUS_LOSING (drops happened)
}

// Stats sums IfaceStats over every interface captured so far (closed ones
// included) and lists the open ones.
type Stats struct {
	IfaceStats              // sums; Interface and Ifindex are empty
	Interfaces []IfaceStats // one per open interface
	Opened     uint64       // interface sockets opened (initially and by re-scan)
	Closed     uint64       // ... closed because the interface went away or down
	OpenErrors uint64       // re-scan failures to open a new interface
	Skipped    uint64       // interfaces beyond MaxInterfaces
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("afpacket: capture closed")

// Capture reads frames from one ring per interface.
type Capture struct {
	cfg    Config
	filter []sockFilter
	wake   int // eventfd: Close and context cancellation wake poll with it

	mu      sync.Mutex // guards handles, retired, stats, running, closed
	handles []*handle
	retired IfaceStats // counters of closed handles
	stats   Stats      // Opened, Closed, ... (IfaceStats unused)
	running bool
	closed  bool
	done    chan struct{} // closed when Run returns; nil when not running
}

// Open opens the configured interfaces. An interface name that does not
// exist, or that cannot be opened, is an error and nothing stays open.
func Open(cfg Config) (*Capture, error) {
	cfg.setDefaults()
	if err := cfg.validate(pageSize()); err != nil {
		return nil, err
	}
	filter, err := buildFilter(cfg.SnapLen, cfg.Filter)
	if err != nil {
		return nil, err
	}
	c := &Capture{cfg: cfg, filter: filter, wake: -1}
	var ifaces []net.Interface
	if len(cfg.Interfaces) == 0 {
		if ifaces, err = upInterfaces(); err != nil {
			return nil, err
		}
		if len(ifaces) > MaxInterfaces {
			c.stats.Skipped += uint64(len(ifaces) - MaxInterfaces)
			ifaces = ifaces[:MaxInterfaces]
		}
	} else {
		for _, name := range cfg.Interfaces {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return nil, fmt.Errorf("afpacket: interface %q: %w", name, err)
			}
			ifaces = append(ifaces, *ifi)
		}
	}
	if c.wake, err = newWake(); err != nil {
		return nil, err
	}
	for _, ifi := range ifaces {
		h, err := openHandle(ifi, &c.cfg, c.filter)
		if err != nil {
			c.closeAll()
			return nil, err
		}
		c.handles = append(c.handles, h)
		c.stats.Opened++
	}
	return c, nil
}

// Interfaces lists the interfaces currently captured.
func (c *Capture) Interfaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.handles))
	for i, h := range c.handles {
		out[i] = h.name
	}
	return out
}

// Stats returns the counters so far. It is safe to call at any time,
// concurrently with Run.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.IfaceStats = c.retired
	s.Interfaces = make([]IfaceStats, 0, len(c.handles))
	for _, h := range c.handles {
		hs := h.snapshot()
		s.Interfaces = append(s.Interfaces, hs)
		s.add(&hs)
	}
	s.Interface, s.Ifindex = "", 0
	return s
}

func (s *IfaceStats) add(o *IfaceStats) {
	s.Frames += o.Frames
	s.Bytes += o.Bytes
	s.Captured += o.Captured
	s.KernelPackets += o.KernelPackets
	s.Drops += o.Drops
	s.FreezeQ += o.FreezeQ
	s.DupLoopback += o.DupLoopback
	s.BadFrames += o.BadFrames
	s.LosingBlocks += o.LosingBlocks
}

// Close stops a running Run (waiting for it to return) and releases the
// sockets and rings. It is safe to call more than once.
func (c *Capture) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	done := c.done
	c.mu.Unlock()
	if done != nil {
		signalWake(c.wake)
		<-done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeAll()
}

// closeAll releases everything; c.mu held or c not shared yet.
func (c *Capture) closeAll() error {
	var errs []error
	for _, h := range c.handles {
		hs := h.snapshot()
		c.retired.add(&hs)
		errs = append(errs, h.close())
	}
	c.handles = nil
	if c.wake >= 0 {
		errs = append(errs, closeFD(c.wake))
		c.wake = -1
	}
	return errors.Join(errs...)
}
