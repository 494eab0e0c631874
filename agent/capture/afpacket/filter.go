package afpacket

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// skfNetOff is SKF_NET_OFF (-0x100000): a classic-BPF absolute load at
// skfNetOff+k reads byte k of the network header, wherever the link header
// ends (Ethernet, Ethernet with in-band VLAN tags, or none for SOCK_DGRAM).
const skfNetOff = 0xfff00000

// buildFilter assembles the socket filter. A packet socket's filter return
// value is how many bytes of the packet are kept, so even without the
// TCP/UDP test a filter returning snapLen is how the snap length is
// enforced on a TPACKET ring (the ring has no snaplen option of its own).
//
// With tcpUDPOnly, the program keeps:
//   - IPv4 with protocol TCP or UDP (non-first fragments too: decode counts them),
//   - IPv6 whose first next-header is TCP, UDP, or an extension header
//     (hop-by-hop, routing, fragment, destination options; decode walks them),
//   - frames whose skb protocol is still an 802.1Q/802.1ad tag (in-band VLAN on
//     transmit; on receive the kernel has already moved tags out of band and
//     skb->protocol is the inner type), left for decode to sort out,
//
// and drops the rest (ARP, ICMP, ICMPv6, ...). The EtherType comes from the
// skb's protocol (SKF_AD_PROTOCOL), so one program serves every link type.
func buildFilter(snapLen int, tcpUDPOnly bool) ([]unix.SockFilter, error) {
	keep := bpf.RetConstant{Val: uint32(snapLen)}
	drop := bpf.RetConstant{Val: 0}
	var prog []bpf.Instruction
	var err error
	if !tcpUDPOnly {
		prog = []bpf.Instruction{keep}
	} else {
		// Jumps name their target; resolve turns the names into offsets.
		const (
			lIPv4 = "ipv4"
			lIPv6 = "ipv6"
			lKeep = "keep"
		)
		prog, err = resolve([]step{
			{ins: bpf.LoadExtension{Num: bpf.ExtProto}},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP}, to: lIPv4},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6}, to: lIPv6},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_8021Q}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_8021AD}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x9100}, to: lKeep},
			{ins: drop},
			// IPv4: protocol byte.
			{label: lIPv4, ins: bpf.LoadAbsolute{Off: skfNetOff + 9, Size: 1}},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP}, to: lKeep},
			{ins: drop},
			// IPv6: first next-header.
			{label: lIPv6, ins: bpf.LoadAbsolute{Off: skfNetOff + 6, Size: 1}},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_HOPOPTS}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_ROUTING}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_FRAGMENT}, to: lKeep},
			{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_DSTOPTS}, to: lKeep},
			{ins: drop},
			{label: lKeep, ins: keep},
		})
		if err != nil {
			return nil, err
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble socket filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// step is one instruction of a program under construction; a JumpIf with a
// non-empty to jumps (when true) to the step labelled so.
type step struct {
	label string
	ins   bpf.Instruction
	to    string
}

// resolve fills in forward jump offsets (classic BPF only jumps forward,
// at most 255 instructions).
func resolve(steps []step) ([]bpf.Instruction, error) {
	at := make(map[string]int, 4)
	for i, s := range steps {
		if s.label != "" {
			at[s.label] = i
		}
	}
	out := make([]bpf.Instruction, len(steps))
	for i, s := range steps {
		out[i] = s.ins
		j, ok := s.ins.(bpf.JumpIf)
		if !ok || s.to == "" {
			continue
		}
		to, ok := at[s.to]
		skip := to - i - 1
		if !ok || skip < 0 || skip > 255 {
			return nil, fmt.Errorf("socket filter: bad jump from %d to %q", i, s.to)
		}
		j.SkipTrue = uint8(skip)
		out[i] = j
	}
	return out, nil
}
