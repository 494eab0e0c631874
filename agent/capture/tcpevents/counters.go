package tcpevents

import (
	"net/netip"
	"sort"
	"strconv"
	"sync"

	"github.com/sightline-io/sightline/agent/capture"
)

// CounterKey identifies one aggregate: a process and a pair of endpoints.
// The ephemeral side's port is zeroed so one process talking to one
// service is one key however many connections it opens: the local port
// for clients (connect), the remote port for servers (accepted sockets
// and listeners), and for unattributed sockets the higher of the two.
type CounterKey struct {
	PID    uint32
	Comm   string
	Local  netip.AddrPort
	Remote netip.AddrPort
}

// CounterValues are event counts of one key.
type CounterValues struct {
	ConnectAttempts uint64
	ConnectFailures uint64
	Retransmits     uint64
	ResetsSent      uint64
	ResetsReceived  uint64
}

func (v *CounterValues) add(o CounterValues) {
	v.ConnectAttempts += o.ConnectAttempts
	v.ConnectFailures += o.ConnectFailures
	v.Retransmits += o.Retransmits
	v.ResetsSent += o.ResetsSent
	v.ResetsReceived += o.ResetsReceived
}

// Total is the sum of all counts (ranking).
func (v CounterValues) Total() uint64 {
	return v.ConnectAttempts + v.ConnectFailures + v.Retransmits + v.ResetsSent + v.ResetsReceived
}

// CounterEntry is one key and its counts.
type CounterEntry struct {
	Key CounterKey
	CounterValues
}

// DefaultMaxCounterKeys bounds Counters when NewCounters gets 0.
const DefaultMaxCounterKeys = 4096

// Counters aggregates events per CounterKey, safe for concurrent use.
// Bounded: once MaxKeys keys exist, events of new keys are added to a
// single overflow aggregate (key with Comm "other") and counted in
// Overflowed.
type Counters struct {
	mu         sync.Mutex
	max        int
	m          map[CounterKey]*CounterValues
	other      CounterValues
	overflowed uint64
}

// NewCounters returns Counters holding at most maxKeys keys
// (0 = DefaultMaxCounterKeys).
func NewCounters(maxKeys int) *Counters {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxCounterKeys
	}
	return &Counters{max: maxKeys, m: make(map[CounterKey]*CounterValues)}
}

// OtherComm labels the overflow aggregate.
const OtherComm = "other"

// KeyOf returns the aggregation key of an event.
func KeyOf(e *Event) CounterKey {
	local := netip.AddrPortFrom(e.Tuple.AIP, e.Tuple.APort)
	remote := netip.AddrPortFrom(e.Tuple.BIP, e.Tuple.BPort)
	switch {
	case e.Owner == OwnerConnect:
		local = netip.AddrPortFrom(local.Addr(), 0)
	case e.Owner == OwnerListener || e.Owner == OwnerListen:
		remote = netip.AddrPortFrom(remote.Addr(), 0)
	case e.Tuple.APort > e.Tuple.BPort:
		local = netip.AddrPortFrom(local.Addr(), 0)
	default:
		remote = netip.AddrPortFrom(remote.Addr(), 0)
	}
	return CounterKey{PID: e.PID, Comm: e.Comm, Local: local, Remote: remote}
}

// Add counts one event; types that are not counted are ignored.
func (c *Counters) Add(e *Event) {
	var d CounterValues
	switch e.Type {
	case ConnectStart:
		d.ConnectAttempts = 1
	case ConnectFailed:
		d.ConnectFailures = 1
	case Retransmit:
		d.Retransmits = 1
	case ResetSent:
		d.ResetsSent = 1
	case ResetReceived:
		d.ResetsReceived = 1
	default:
		return
	}
	k := KeyOf(e)
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		v.add(d)
		return
	}
	if len(c.m) >= c.max {
		c.overflowed++
		c.other.add(d)
		return
	}
	c.m[k] = &d
}

// Overflowed is how many events went to the overflow aggregate.
func (c *Counters) Overflowed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.overflowed
}

// Snapshot copies every entry, the overflow aggregate last (if non-zero),
// ordered by Total descending.
func (c *Counters) Snapshot() []CounterEntry {
	c.mu.Lock()
	out := make([]CounterEntry, 0, len(c.m)+1)
	for k, v := range c.m {
		out = append(out, CounterEntry{Key: k, CounterValues: *v})
	}
	other := c.other
	c.mu.Unlock()
	sortEntries(out)
	if other.Total() > 0 {
		out = append(out, CounterEntry{Key: CounterKey{Comm: OtherComm}, CounterValues: other})
	}
	return out
}

// Lookup returns the counts of one key.
func (c *Counters) Lookup(k CounterKey) (CounterValues, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	if !ok {
		return CounterValues{}, false
	}
	return *v, true
}

func sortEntries(es []CounterEntry) {
	sort.Slice(es, func(i, j int) bool {
		ti, tj := es[i].Total(), es[j].Total()
		if ti != tj {
			return ti > tj
		}
		a, b := es[i].Key, es[j].Key
		if a.Comm != b.Comm {
			return a.Comm < b.Comm
		}
		if c := a.Remote.Compare(b.Remote); c != 0 {
			return c < 0
		}
		if c := a.Local.Compare(b.Local); c != 0 {
			return c < 0
		}
		return a.PID < b.PID
	})
}

// endpointLabel formats an endpoint: "ip:port", or "ip" when the port was
// zeroed as ephemeral.
func endpointLabel(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return ""
	}
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	if ap.Addr().Is6() {
		return "[" + ap.Addr().String() + "]:" + strconv.Itoa(int(ap.Port()))
	}
	return ap.String()
}

func sortSeries(ss []series) {
	sort.Slice(ss, func(i, j int) bool {
		ti, tj := ss[i].Total(), ss[j].Total()
		if ti != tj {
			return ti > tj
		}
		a, b := ss[i].Key, ss[j].Key
		if a.comm != b.comm {
			return a.comm < b.comm
		}
		if a.remote != b.remote {
			return a.remote < b.remote
		}
		return a.local < b.local
	})
}

// Tuple4 builds a TCP capture.Tuple from two endpoints (A = local).
func Tuple4(local, remote netip.AddrPort) capture.Tuple {
	return capture.Tuple{AIP: local.Addr(), BIP: remote.Addr(), APort: local.Port(), BPort: remote.Port(), L4: 6}
}

// Retire folds the counts of a process that exited into PID 0 entries with
// the same comm and endpoints, so per-label totals stay monotonic while
// the table sheds keys of dead processes (call it on process exit). It
// returns how many keys were folded.
func (c *Counters) Retire(pid uint32) int {
	if pid == 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.m {
		if k.PID != pid {
			continue
		}
		delete(c.m, k)
		k.PID = 0
		if dst, ok := c.m[k]; ok {
			dst.add(*v)
		} else {
			c.m[k] = v
		}
		n++
	}
	return n
}
