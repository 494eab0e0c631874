package amqp

import (
	"testing"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseAMQP parses Queue.Declare/Declare-Ok pairs plus a
// Basic.Publish with its content header and a 256-byte body, on one
// connection, one segment per message.
func BenchmarkParseAMQP(b *testing.B) {
	p := New(l7.Config{}).NewParser()
	p.Feed(parsertest.Whole(c2s, []byte(protocolHeader)), func(*l7.Message) {})
	req := meth(1, 50, 10, u16(0), ss("orders"), []byte{0x02}, ls(""))
	resp := meth(1, 50, 11, ss("orders"), ls(""), ls(""))
	pub := append(meth(1, 60, 40, u16(0), ss("events"), ss("order.created"), []byte{0}), content(1, string(make([]byte, 256)))...)
	reqSeg, respSeg, pubSeg := parsertest.Whole(c2s, req), parsertest.Whole(s2c, resp), parsertest.Whole(c2s, pub)
	parsertest.Bench(b, p, 3, reqSeg, respSeg, pubSeg)
}
