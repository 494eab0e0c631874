package http2

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	cli = capture.AtoB // the client's egress in these conversations
	srv = capture.BtoA
)

// rec is one segment: data, plus gap uncaptured bytes.
type rec struct {
	dir  capture.Direction
	data []byte
	gap  int
}

// conv builds an HTTP/2 conversation the way real peers encode it: one
// HPACK encoder per direction, frames written by x/net's Framer.
type conv struct {
	t    testing.TB
	enc  [2]*hpack.Encoder
	hbuf [2]bytes.Buffer
	out  bytes.Buffer
	fr   *http2.Framer
	recs []rec
}

func newConv(t testing.TB) *conv {
	c := &conv{t: t}
	for i := range c.enc {
		c.enc[i] = hpack.NewEncoder(&c.hbuf[i])
	}
	c.fr = http2.NewFramer(&c.out, nil)
	c.fr.AllowIllegalWrites = true
	return c
}

// flush turns what was written since the last flush into one segment.
func (c *conv) flush(dir capture.Direction) *conv {
	c.recs = append(c.recs, rec{dir: dir, data: bytes.Clone(c.out.Bytes())})
	c.out.Reset()
	return c
}

func (c *conv) check(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// block HPACK-encodes fields (name, value pairs) for dir.
func (c *conv) block(dir capture.Direction, kv ...string) []byte {
	c.hbuf[dir].Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		c.check(c.enc[dir].WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}))
	}
	return bytes.Clone(c.hbuf[dir].Bytes())
}

func (c *conv) preface() *conv {
	c.out.WriteString(preface)
	c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20}))
	return c
}

func (c *conv) settings(ack bool) *conv {
	if ack {
		c.check(c.fr.WriteSettingsAck())
	} else {
		c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 250},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384}))
	}
	return c
}

func (c *conv) headers(dir capture.Direction, id uint32, end bool, kv ...string) *conv {
	c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(dir, kv...),
		EndStream: end, EndHeaders: true}))
	return c
}

func (c *conv) data(id uint32, end bool, payload []byte) *conv {
	c.check(c.fr.WriteData(id, end, payload))
	return c
}

func (c *conv) rst(id uint32, code http2.ErrCode) *conv {
	c.check(c.fr.WriteRSTStream(id, code))
	return c
}

// grpcMsg frames a gRPC message.
func grpcMsg(payload string) []byte {
	b := []byte{0, 0, 0, 0, byte(len(payload))}
	return append(b, payload...)
}

// Typical grpc-go header sets.
func grpcReq(method string) []string {
	return []string{":method", "POST", ":scheme", "http", ":path", method, ":authority", "127.0.0.1:50051",
		"content-type", "application/grpc", "user-agent", "grpc-go/1.85.0", "te", "trailers"}
}

var grpcRespHeaders = []string{":status", "200", "content-type", "application/grpc"}

// unary appends a whole gRPC unary call on stream id: request in one
// segment, response in another, trailers with code and message.
func (c *conv) unary(id uint32, method, code, message string) *conv {
	c.headers(cli, id, false, grpcReq(method)...).data(id, true, grpcMsg("\x0a\x03abc")).flush(cli)
	c.headers(srv, id, false, grpcRespHeaders...).data(id, false, grpcMsg("\x08\x01"))
	tr := []string{"grpc-status", code}
	if message != "" {
		tr = append(tr, "grpc-message", message)
	}
	return c.headers(srv, id, true, tr...).flush(srv)
}

// summary is the part of a Message the tests compare.
type summary struct {
	Type     l7.MessageType
	Dir      capture.Direction
	Proto    flowlog.L7Protocol
	Method   string
	Domain   string
	Resource string
	Endpoint string
	ID       uint64
	Code     int32
	HasCode  bool
	Status   flowlog.ResponseStatus
	Exc      string
}

func summarize(m *l7.Message) summary {
	return summary{Type: m.Type, Dir: m.Dir, Proto: m.Protocol, Method: m.RequestType, Domain: m.Domain,
		Resource: m.Resource, Endpoint: m.Endpoint, ID: m.RequestID, Code: m.Code, HasCode: m.HasCode,
		Status: m.Status, Exc: m.Exception}
}

func reqSum(proto flowlog.L7Protocol, method, domain, resource, endpoint string, id uint64) summary {
	return summary{Type: l7.Request, Dir: cli, Proto: proto, Method: method, Domain: domain, Resource: resource,
		Endpoint: endpoint, ID: id}
}

func respSum(proto flowlog.L7Protocol, id uint64, code int32, status flowlog.ResponseStatus, exc string) summary {
	return summary{Type: l7.Response, Dir: srv, Proto: proto, ID: id, Code: code, HasCode: true, Status: status, Exc: exc}
}

// feed runs recs through a fresh parser (Close included) and returns every
// message emitted, copied, checking the invariants every message keeps.
func feed(t testing.TB, p *Parser, recs []rec) []l7.Message {
	t.Helper()
	var out []l7.Message
	var fed [2]int64
	emit := func(m *l7.Message) {
		if m.Protocol != flowlog.L7HTTP2 && m.Protocol != flowlog.L7GRPC || m.Version != "2" || !m.HasRequestID {
			t.Fatalf("bad message identity %+v", m)
		}
		if m.Length < 0 || int64(m.Captured) > m.Length || int64(m.Captured) > fed[0]+fed[1] {
			t.Fatalf("length %d captured %d fed %v", m.Length, m.Captured, fed)
		}
		out = append(out, *m)
	}
	now := time.Unix(1700000000, 0)
	var seq [2]uint32
	for i, r := range recs {
		now = now.Add(time.Millisecond)
		seg := &capture.Segment{Dir: r.dir, Start: now, End: now.Add(100 * time.Microsecond),
			Data: r.data, Len: len(r.data) + r.gap, TCPSeq: seq[r.dir], CapSeq: uint32(i)}
		seq[r.dir] += uint32(seg.Len)
		fed[r.dir] += int64(len(r.data))
		p.Feed(seg, emit)
		checkBounds(t, p)
	}
	p.Close(emit)
	return out
}

func checkBounds(t testing.TB, p *Parser) {
	t.Helper()
	if len(p.streams) > maxStreams {
		t.Fatalf("%d streams tracked, limit %d", len(p.streams), maxStreams)
	}
	for i := range p.dirs {
		d := &p.dirs[i]
		if d.buf.Buffered() > maxFrameBuffer || len(d.hp.carry) > maxCarry {
			t.Fatalf("buffers hold %d and %d bytes", d.buf.Buffered(), len(d.hp.carry))
		}
	}
	if p.held < 0 || p.held > len(p.streams) {
		t.Fatalf("held %d with %d streams", p.held, len(p.streams))
	}
}

func summaries(ms []l7.Message) []summary {
	out := make([]summary, len(ms))
	for i := range ms {
		out[i] = summarize(&ms[i])
	}
	return out
}

func newTestParser() *Parser { return New(l7.Config{}).NewParser().(*Parser) }
