package netcap

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Observation points (l4_flow_log.observation_point) for packets captured
// on this host's interfaces.
const (
	ObsLocal  = "local" // both ends are addresses of this host
	ObsClient = "c"     // the client end is local
	ObsServer = "s"     // the server end is local
	ObsRest   = "rest"  // neither end is local (bridged or forwarded traffic)
)

// ObservationPoint names the observation point of a flow captured on this
// host, given whether its client and server addresses are local. It is
// left to the flow and session layers to call: only they know which end is
// the client (the SYN's sender, or the request's); the capture itself
// reports just where a frame was seen (interface and Outgoing).
func ObservationPoint(clientLocal, serverLocal bool) string {
	switch {
	case clientLocal && serverLocal:
		return ObsLocal
	case clientLocal:
		return ObsClient
	case serverLocal:
		return ObsServer
	}
	return ObsRest
}

// MaxLocalAddrs bounds the addresses LocalAddrs keeps.
const MaxLocalAddrs = 4096

// LocalAddrs is the set of this host's addresses (of its network
// namespace). Refresh it periodically (interfaces and addresses change);
// it is safe for concurrent use.
type LocalAddrs struct {
	mu      sync.RWMutex
	addrs   map[netip.Addr]struct{}
	dropped int // addresses beyond MaxLocalAddrs at the last Refresh
}

// Refresh re-reads the host's interface addresses.
func (l *LocalAddrs) Refresh() error {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("netcap: interface addresses: %w", err)
	}
	m := make(map[netip.Addr]struct{}, len(ifAddrs))
	dropped := 0
	for _, a := range ifAddrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if len(m) >= MaxLocalAddrs {
			dropped++
			continue
		}
		m[pfx.Addr().Unmap()] = struct{}{}
	}
	l.mu.Lock()
	l.addrs, l.dropped = m, dropped
	l.mu.Unlock()
	return nil
}

// Contains reports whether a is an address of this host. Loopback
// addresses always are.
func (l *LocalAddrs) Contains(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() {
		return true
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.addrs[a]
	return ok
}

// Dropped reports how many addresses the last Refresh could not keep.
func (l *LocalAddrs) Dropped() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dropped
}
