package afpacket

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sightline-io/sightline/packet/decode"
)

type sockFilter = unix.SockFilter

// TPACKET_V3 layout (include/uapi/linux/if_packet.h). A block starts with
// struct tpacket_block_desc: version, offset_to_priv, then
// struct tpacket_hdr_v1, whose fields are at these offsets from the block.
const (
	blkStatusOff   = 8  // block_status
	blkNumPktsOff  = 12 // num_pkts
	blkFirstPktOff = 16 // offset_to_first_pkt
	blkLenOff      = 20 // blk_len
	blkHdrLen      = 48 // sizeof(tpacket_block_desc), 8-aligned

	// struct tpacket3_hdr fields.
	pktNextOff    = 0
	pktSecOff     = 4
	pktNsecOff    = 8
	pktSnaplenOff = 12
	pktLenOff     = 16
	pktStatusOff  = 20
	pktMacOff     = 24
	pktVLANTCIOff = 32 // hv1.tp_vlan_tci
	pktHdrLen     = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr)); sockaddr_ll follows
	// struct sockaddr_ll after the header: family(2) protocol(2)
	// ifindex(4) hatype(2) pkttype(1) halen(1) addr(8).
	sllPkttypeOff = pktHdrLen + 10

	// blockOverhead is what a block needs besides the captured bytes of
	// one frame: block header, frame header, sockaddr_ll and alignment.
	blockOverhead = blkHdrLen + pktHdrLen + 20 + 16 + 64
)

// Hardware types (include/uapi/linux/if_arp.h) whose frames carry an
// Ethernet header.
const (
	arphrdEther    = 1
	arphrdLoopback = 772
)

// handle is one interface's socket and ring. Only the Run goroutine reads
// the ring; counters are atomics so that Stats can read them.
type handle struct {
	name     string
	ifindex  int
	hatype   uint16
	loopback bool
	link     decode.LinkType
	fd       int
	ring     []byte
	blockSz  int
	nblocks  int
	cur      int // next block to read

	frames, bytes, captured            atomic.Uint64
	dupLoopback, badFrames, losing     atomic.Uint64
	kernPackets, kernDrops, kernFreeze uint64 // under Capture.mu
}

// openHandle opens a socket bound to ifi with a TPACKET_V3 ring. The socket
// is created with protocol 0 (it receives nothing) and only bound to
// ETH_P_ALL once the filter and ring are in place, so no unfiltered frame
// slips in.
func openHandle(ifi net.Interface, cfg *Config, filter []sockFilter) (h *handle, err error) {
	hatype, err := hardwareType(ifi.Name)
	if err != nil {
		return nil, err
	}
	h = &handle{
		name: ifi.Name, ifindex: ifi.Index, hatype: hatype,
		loopback: hatype == arphrdLoopback,
		fd:       -1, blockSz: cfg.BlockSize, nblocks: cfg.NumBlocks,
	}
	sockType := unix.SOCK_RAW
	h.link = decode.LinkTypeEthernet
	if hatype != arphrdEther && hatype != arphrdLoopback {
		// No Ethernet header: let the kernel strip whatever link header
		// there is and hand over the network-layer packet.
		sockType = unix.SOCK_DGRAM
		h.link = decode.LinkTypeRaw
	}
	defer func() {
		if err != nil {
			_ = h.close()
			h = nil
		}
	}()
	wrap := func(what string, e error) error {
		return fmt.Errorf("afpacket: %s %s: %w", ifi.Name, what, e)
	}
	if h.fd, err = unix.Socket(unix.AF_PACKET, sockType|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
		return h, wrap("socket", err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err = unix.SetsockoptSockFprog(h.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return h, wrap("attach filter", err)
	}
	if h.loopback {
		// Keep only the received copy on loopback (see the package doc).
		// Best effort: user space drops outgoing copies too.
		_ = unix.SetsockoptInt(h.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	}
	if err = unix.SetsockoptInt(h.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return h, wrap("set TPACKET_V3", err)
	}
	frameSz := min(2048, cfg.BlockSize)
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.NumBlocks),
		Frame_size:     uint32(frameSz),
		Frame_nr:       uint32(cfg.BlockSize / frameSz * cfg.NumBlocks),
		Retire_blk_tov: uint32(max(1, cfg.BlockTimeout.Milliseconds())),
	}
	if err = unix.SetsockoptTpacketReq3(h.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return h, wrap("set rx ring", err)
	}
	if h.ring, err = unix.Mmap(h.fd, 0, cfg.BlockSize*cfg.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED); err != nil {
		// MAP_LOCKED can fail under RLIMIT_MEMLOCK; the ring works unlocked.
		if h.ring, err = unix.Mmap(h.fd, 0, cfg.BlockSize*cfg.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return h, wrap("mmap ring", err)
		}
	}
	sa := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err = unix.Bind(h.fd, &sa); err != nil {
		return h, wrap("bind", err)
	}
	return h, nil
}

// hardwareType reads the interface's ARPHRD_ type (SIOCGIFHWADDR's
// sa_family).
func hardwareType(name string) (uint16, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("afpacket: %s: socket for ioctl: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("afpacket: %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, fmt.Errorf("afpacket: %s: hardware type: %w", name, err)
	}
	return ifr.Uint16(), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (h *handle) close() error {
	var err error
	if h.ring != nil {
		err = unix.Munmap(h.ring)
		h.ring = nil
	}
	if h.fd >= 0 {
		if e := unix.Close(h.fd); err == nil {
			err = e
		}
		h.fd = -1
	}
	if err != nil {
		return fmt.Errorf("afpacket: close %s: %w", h.name, err)
	}
	return nil
}

// statusWord returns the block's status word for atomic access: the kernel
// writes it concurrently.
func (h *handle) statusWord(block int) *uint32 {
	return (*uint32)(unsafe.Pointer(&h.ring[block*h.blockSz+blkStatusOff]))
}

// ready reports whether the current block belongs to user space.
func (h *handle) ready() bool {
	return atomic.LoadUint32(h.statusWord(h.cur))&unix.TP_STATUS_USER != 0
}

// readBlock hands every frame of the current block to fn, returns the block
// to the kernel and advances. The caller checked ready().
func (h *handle) readBlock(f *Frame, fn func(*Frame)) {
	status := atomic.LoadUint32(h.statusWord(h.cur))
	base := h.cur * h.blockSz
	blk := h.ring[base : base+h.blockSz]
	if status&unix.TP_STATUS_LOSING != 0 {
		h.losing.Add(1)
	}
	le := binary.NativeEndian
	n := int(le.Uint32(blk[blkNumPktsOff:]))
	off := int(le.Uint32(blk[blkFirstPktOff:]))
	end := min(int(le.Uint32(blk[blkLenOff:])), len(blk))
	f.Interface, f.Ifindex, f.LinkType = h.name, h.ifindex, h.link
	var frames, wire, capt uint64
	for range n {
		if off < blkHdrLen || off+sllPkttypeOff+1 > end {
			h.badFrames.Add(1)
			break
		}
		p := blk[off:]
		next := int(le.Uint32(p[pktNextOff:]))
		snap := int(le.Uint32(p[pktSnaplenOff:]))
		mac := int(le.Uint16(p[pktMacOff:]))
		if mac < pktHdrLen || off+mac+snap > end {
			h.badFrames.Add(1)
			break
		}
		outgoing := p[sllPkttypeOff] == unix.PACKET_OUTGOING
		if outgoing && h.loopback {
			h.dupLoopback.Add(1)
		} else {
			f.Data = p[mac : mac+snap : mac+snap]
			f.WireLen = int(le.Uint32(p[pktLenOff:]))
			f.Time = time.Unix(int64(le.Uint32(p[pktSecOff:])), int64(le.Uint32(p[pktNsecOff:])))
			f.Outgoing = outgoing
			f.VLAN = 0
			if le.Uint32(p[pktStatusOff:])&unix.TP_STATUS_VLAN_VALID != 0 {
				f.VLAN = uint16(le.Uint32(p[pktVLANTCIOff:]))
			}
			fn(f)
			frames++
			wire += uint64(f.WireLen)
			capt += uint64(snap)
		}
		if next == 0 {
			break
		}
		off += next
	}
	f.Data = nil
	h.frames.Add(frames)
	h.bytes.Add(wire)
	h.captured.Add(capt)
	atomic.StoreUint32(h.statusWord(h.cur), unix.TP_STATUS_KERNEL)
	h.cur = (h.cur + 1) % h.nblocks
}

// kernelStats reads and accumulates PACKET_STATISTICS (the kernel resets
// them on every read). Caller holds Capture.mu.
func (h *handle) kernelStats() {
	if h.fd < 0 {
		return
	}
	st, err := unix.GetsockoptTpacketStatsV3(h.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return
	}
	h.kernPackets += uint64(st.Packets)
	h.kernDrops += uint64(st.Drops)
	h.kernFreeze += uint64(st.Freeze_q_cnt)
}

// snapshot returns the handle's counters. Caller holds Capture.mu.
func (h *handle) snapshot() IfaceStats {
	h.kernelStats()
	return IfaceStats{
		Interface: h.name, Ifindex: h.ifindex,
		Frames: h.frames.Load(), Bytes: h.bytes.Load(), Captured: h.captured.Load(),
		KernelPackets: h.kernPackets, Drops: h.kernDrops, FreezeQ: h.kernFreeze,
		DupLoopback: h.dupLoopback.Load(), BadFrames: h.badFrames.Load(), LosingBlocks: h.losing.Load(),
	}
}

func pageSize() int { return unix.Getpagesize() }

func newWake() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("afpacket: eventfd: %w", err)
	}
	return fd, nil
}

func signalWake(fd int) {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(fd, one[:])
}

func drainWake(fd int) {
	var buf [8]byte
	_, _ = unix.Read(fd, buf[:])
}

func closeFD(fd int) error {
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("afpacket: close: %w", err)
	}
	return nil
}

// upInterfaces lists the interfaces that are up.
func upInterfaces() ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("afpacket: list interfaces: %w", err)
	}
	up := all[:0]
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 {
			up = append(up, ifi)
		}
	}
	return up, nil
}
