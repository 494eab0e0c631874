package tcpevents

import (
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultTopN bounds the label sets a Collector exports per scrape.
const DefaultTopN = 100

// Collector exports Counters to Prometheus. Series are labeled by comm,
// local and remote endpoint (pid is left out: it churns); the TopN label
// sets by total count are exported as they are and the rest are summed
// into comm="other", local="other", remote="other". A label set that
// drops out of the top N moves its counts to "other", so individual series
// can step down between scrapes; totals across series never do.
type Collector struct {
	counters *Counters
	topN     int
	stats    func() Stats // may be nil

	attempts, failures, retrans, rstSent, rstRecv *prometheus.Desc
	lost, unattributed, overflow                  *prometheus.Desc
}

// NewCollector returns a collector of c. stats, if not nil, supplies the
// tracer's drop counters (usually (*Tracer).Stats). topN <= 0 means
// DefaultTopN.
func NewCollector(c *Counters, topN int, stats func() Stats) *Collector {
	if topN <= 0 {
		topN = DefaultTopN
	}
	labels := []string{"comm", "local", "remote"}
	d := func(name, help string, l []string) *prometheus.Desc {
		return prometheus.NewDesc("sightline_agent_tcp_"+name, help, l, nil)
	}
	return &Collector{
		counters: c, topN: topN, stats: stats,
		attempts: d("connect_attempts_total", "TCP connect attempts (SYN_SENT) seen by the eBPF tracer.", labels),
		failures: d("connect_failures_total", "TCP connects that failed (SYN_SENT -> CLOSE).", labels),
		retrans:  d("retransmits_total", "TCP segments retransmitted.", labels),
		rstSent:  d("resets_sent_total", "TCP resets sent.", labels),
		rstRecv:  d("resets_received_total", "TCP resets received on an existing socket.", labels),
		lost:     d("events_lost_total", "TCP lifecycle events lost in the kernel: ring buffer full.", nil),
		unattributed: d("owner_record_failures_total",
			"Sockets whose owning process could not be recorded (map full or update failed).", nil),
		overflow: d("counter_overflow_total", "Events aggregated as comm=\"other\" because the counter table was full.", nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.attempts, c.failures, c.retrans, c.rstSent, c.rstRecv,
		c.lost, c.unattributed, c.overflow} {
		ch <- d
	}
}

type labelKey struct{ comm, local, remote string }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.series() {
		k, v := s.Key, s.CounterValues
		for _, m := range []struct {
			d *prometheus.Desc
			v uint64
		}{
			{c.attempts, v.ConnectAttempts}, {c.failures, v.ConnectFailures}, {c.retrans, v.Retransmits},
			{c.rstSent, v.ResetsSent}, {c.rstRecv, v.ResetsReceived},
		} {
			if m.v == 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v), k.comm, k.local, k.remote)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.overflow, prometheus.CounterValue, float64(c.counters.Overflowed()))
	if c.stats != nil {
		st := c.stats()
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.RingbufFull))
		ch <- prometheus.MustNewConstMetric(c.unattributed, prometheus.CounterValue, float64(st.OwnerFail+st.ListenerFail))
	}
}

type series struct {
	Key labelKey
	CounterValues
}

// series groups the counters by label set and keeps the top N.
func (c *Collector) series() []series {
	byLabel := make(map[labelKey]*CounterValues)
	var order []labelKey
	for _, e := range c.counters.Snapshot() {
		k := labelKey{e.Key.Comm, endpointLabel(e.Key.Local), endpointLabel(e.Key.Remote)}
		if e.Key.Comm == OtherComm && !e.Key.Local.IsValid() {
			k = labelKey{OtherComm, OtherComm, OtherComm}
		}
		v, ok := byLabel[k]
		if !ok {
			v = &CounterValues{}
			byLabel[k] = v
			order = append(order, k)
		}
		v.add(e.CounterValues)
	}
	out := make([]series, 0, len(order))
	for _, k := range order {
		out = append(out, series{k, *byLabel[k]})
	}
	// Stable rank by total, then labels, so the cut is deterministic.
	sortSeries(out)
	if len(out) <= c.topN {
		return out
	}
	var other CounterValues
	kept := out[:0:0]
	otherKey := labelKey{OtherComm, OtherComm, OtherComm}
	for i, s := range out {
		if i < c.topN && s.Key != otherKey {
			kept = append(kept, s)
			continue
		}
		other.add(s.CounterValues)
	}
	return append(kept, series{otherKey, other})
}
