// Package netcap wires live packet capture to the agent's packet consumers:
// each captured frame is decoded once, then handed to the flow table
// (a FlowSink, e.g. packet/flow) and to TCP/UDP reassembly, whose segments
// and connection ends go to an L7Sink (the session Assembler), so that L7
// spans can be built from the network as well as from eBPF.
//
// Everything runs on the capture's Run goroutine: the decoder, reassembler
// and both sinks are single-threaded and need no locks.
package netcap

import (
	"context"
	"sync"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/capture/afpacket"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/reassembly"
)

// FlowSink receives every decoded TCP/UDP packet with its capture time and
// frame length on the wire (link header included).
type FlowSink interface {
	Packet(p *decode.Packet, ts time.Time, frameLen int)
}

// L7Sink receives reassembled segments and connection ends.
type L7Sink interface {
	Feed(seg *capture.Segment)
	CloseConn(cl capture.Closed)
}

// Expirer is implemented by sinks with time-driven work (idle connections,
// request timeouts); the Pipeline calls Expire on its tick, on the Run
// goroutine, with the wall clock (the clock of live frame timestamps).
type Expirer interface {
	Expire(now time.Time)
}

// DefaultExpireEvery is how often Expire runs when Config leaves it zero.
const DefaultExpireEvery = time.Second

// Config configures a Pipeline.
type Config struct {
	Reassembly  reassembly.Config
	ExpireEvery time.Duration
}

// Stats counts what the Pipeline saw.
type Stats struct {
	Frames     uint64 // frames offered
	Outgoing   uint64 // ... of which sent by this host
	Decode     decode.Stats
	Reassembly reassembly.Stats
	Conns      int // connections tracked by reassembly
	Buffered   int // out-of-order bytes held by reassembly
}

// Pipeline decodes frames and fans them out. Frame, Tick and Flush must be
// called from one goroutine (Run does); Stats may be called from any.
type Pipeline struct {
	cfg   Config
	flows FlowSink
	l7    L7Sink
	asm   *reassembly.Assembler
	dec   decode.Decoder
	pkt   decode.Packet

	frames, outgoing uint64

	mu   sync.Mutex
	snap Stats // refreshed by Tick and Flush
}

// New makes a Pipeline. flows or l7 may be nil to skip that consumer
// (without an L7Sink no reassembly is done).
func New(cfg Config, flows FlowSink, l7 L7Sink) *Pipeline {
	if cfg.ExpireEvery <= 0 {
		cfg.ExpireEvery = DefaultExpireEvery
	}
	p := &Pipeline{cfg: cfg, flows: flows, l7: l7}
	if l7 != nil {
		p.asm = reassembly.New(cfg.Reassembly, l7.Feed, l7.CloseConn)
	}
	return p
}

// Frame processes one captured frame; usable directly as the callback of
// afpacket.Capture.Run.
func (p *Pipeline) Frame(f *afpacket.Frame) {
	p.frames++
	if f.Outgoing {
		p.outgoing++
	}
	if err := p.dec.Decode(f.LinkType, f.Data, &p.pkt); err != nil {
		return // counted in the decoder's Stats
	}
	if p.flows != nil {
		p.flows.Packet(&p.pkt, f.Time, f.WireLen)
	}
	if p.asm != nil {
		p.asm.Packet(&p.pkt, f.Time)
	}
}

// Tick runs time-driven work: reassembly hole and idle expiry, then the
// sinks' Expire, and refreshes the Stats snapshot.
func (p *Pipeline) Tick(now time.Time) {
	if p.asm != nil {
		p.asm.Expire(now)
	}
	p.expireSinks(now)
	p.publish()
}

// Flush ends every tracked connection (reported to the L7Sink as closed)
// and refreshes the Stats snapshot; for shutdown.
func (p *Pipeline) Flush(now time.Time) {
	if p.asm != nil {
		p.asm.FlushAll(now)
	}
	p.expireSinks(now)
	p.publish()
}

func (p *Pipeline) expireSinks(now time.Time) {
	if e, ok := p.flows.(Expirer); ok {
		e.Expire(now)
	}
	if e, ok := p.l7.(Expirer); ok {
		e.Expire(now)
	}
}

func (p *Pipeline) publish() {
	s := Stats{Frames: p.frames, Outgoing: p.outgoing, Decode: p.dec.Stats}
	if p.asm != nil {
		s.Reassembly, s.Conns, s.Buffered = p.asm.Stats(), p.asm.Conns(), p.asm.Buffered()
	}
	p.mu.Lock()
	p.snap = s
	p.mu.Unlock()
}

// Stats returns the counters as of the last Tick or Flush.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap
}

// Run feeds the capture's frames through the pipeline until ctx is done or
// the capture is closed, ticking every ExpireEvery, and flushes before it
// returns. It returns what the capture's Run returned.
func (p *Pipeline) Run(ctx context.Context, c *afpacket.Capture) error {
	err := c.RunTick(ctx, p.Frame, p.cfg.ExpireEvery, p.Tick)
	p.Flush(time.Now())
	return err
}
