package agent

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightline-io/sightline/agent/capture/tcpevents"
	"github.com/sightline-io/sightline/flowlog"
)

// maxOwners bounds the socket owners remembered for flow attribution.
const maxOwners = 65536

// endpointPair is a TCP connection seen from one end: local, then remote.
type endpointPair struct {
	local, remote netip.AddrPort
}

type owner struct {
	pid  uint32
	comm string
}

// owners remembers which process owns each TCP connection end, from the
// TCP lifecycle tracer, so that l4_flow_log rows built from packets name
// their client and server processes. Written by the tcp events goroutine,
// read by the packet goroutine.
type owners struct {
	mu sync.Mutex
	m  map[endpointPair]owner
	// dropped counts owners forgotten because the map was full.
	dropped uint64
}

func newOwners() *owners { return &owners{m: make(map[endpointPair]owner)} }

// observe records the owner of a connection end named by a tcp event.
func (o *owners) observe(e *tcpevents.Event) {
	if e.PID == 0 || e.Tuple.APort == 0 || e.Tuple.BPort == 0 {
		return
	}
	switch e.Type {
	case tcpevents.ConnectOK, tcpevents.ConnectFailed, tcpevents.Established, tcpevents.Close,
		tcpevents.ResetReceived, tcpevents.ResetSent, tcpevents.Retransmit:
	default:
		return
	}
	k := endpointPair{netip.AddrPortFrom(e.Tuple.AIP.Unmap(), e.Tuple.APort), netip.AddrPortFrom(e.Tuple.BIP.Unmap(), e.Tuple.BPort)}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.m[k]; !ok && len(o.m) >= maxOwners {
		// Full: start over rather than track age; flows report within a
		// period, so what is lost is at most one period's attribution.
		o.dropped += uint64(len(o.m))
		clear(o.m)
	}
	o.m[k] = owner{pid: e.PID, comm: e.Comm}
}

// attribute fills a flow row's process columns from the owners known for
// its client end and its server end.
func (o *owners) attribute(r *flowlog.L4FlowLog) {
	if r.Protocol != 6 {
		return
	}
	client := netip.AddrPortFrom(r.IP0.Unmap(), r.ClientPort)
	server := netip.AddrPortFrom(r.IP1.Unmap(), r.ServerPort)
	o.mu.Lock()
	defer o.mu.Unlock()
	if w, ok := o.m[endpointPair{client, server}]; ok {
		r.ProcessID0, r.ProcessKName0 = w.pid, w.comm
	}
	if w, ok := o.m[endpointPair{server, client}]; ok {
		r.ProcessID1, r.ProcessKName1 = w.pid, w.comm
	}
}

// flowMetrics is the agent's own view of the flows it reports, on /metrics:
// totals by close type, and the anomaly counters summed over flows.
type flowMetrics struct {
	closes                    *prometheus.CounterVec
	bytes, packets            prometheus.Counter
	retrans, zeroWin, synMiss prometheus.Counter
}

func newFlowMetrics(reg prometheus.Registerer) *flowMetrics {
	m := &flowMetrics{
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sightline_agent_flows_total", Help: "l4_flow_log rows reported, by close_type (Force Report: periodic reports of live flows).",
		}, []string{"close_type"}),
		bytes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "sightline_agent_flow_bytes_total", Help: "Bytes of the flows reported (both directions)."}),
		packets: prometheus.NewCounter(prometheus.CounterOpts{Name: "sightline_agent_flow_packets_total", Help: "Packets of the flows reported (both directions)."}),
		retrans: prometheus.NewCounter(prometheus.CounterOpts{Name: "sightline_agent_flow_retransmissions_total", Help: "Retransmitted segments seen in reported flows."}),
		zeroWin: prometheus.NewCounter(prometheus.CounterOpts{Name: "sightline_agent_flow_zero_windows_total", Help: "Zero-window advertisements seen in reported flows."}),
		synMiss: prometheus.NewCounter(prometheus.CounterOpts{Name: "sightline_agent_flow_syn_retransmissions_total", Help: "SYN and SYN-ACK retransmissions seen in reported flows."}),
	}
	if reg != nil {
		reg.MustRegister(m.closes, m.bytes, m.packets, m.retrans, m.zeroWin, m.synMiss)
	}
	return m
}

func (m *flowMetrics) observe(r *flowlog.L4FlowLog) {
	m.closes.WithLabelValues(r.CloseType.String()).Inc()
	m.bytes.Add(float64(r.ByteTx + r.ByteRx))
	m.packets.Add(float64(r.PacketTx + r.PacketRx))
	m.retrans.Add(float64(r.RetransTx + r.RetransRx))
	m.zeroWin.Add(float64(r.ZeroWinTx + r.ZeroWinRx))
	m.synMiss.Add(float64(r.RetransSYN + r.RetransSYNACK))
}
