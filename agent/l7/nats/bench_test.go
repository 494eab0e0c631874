package nats

import (
	"testing"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// BenchmarkParseNATS parses request-reply exchanges (PUB with a reply
// subject, MSG on it) and a one-way publish, one segment per message.
func BenchmarkParseNATS(b *testing.B) {
	p := newParser()
	setup := []*capture.Segment{
		{Dir: capture.BtoA, Data: []byte(info), Len: len(info)},
		{Dir: capture.AtoB, Data: []byte("SUB _INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.* 1\r\n"), Len: 39},
	}
	for _, s := range setup {
		p.Feed(s, func(*l7.Message) {})
	}
	msgs := []string{
		"PUB orders.lookup _INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.abc123 16\r\n{\"order\":123456}\r\n",
		"MSG _INBOX.Ldhc3mFQ2sXZ7Q8pG1eC9k.abc123 1 20\r\n{\"status\":\"shipped\"}\r\n",
		"PUB orders.events.created 16\r\n{\"order\":123456}\r\n",
	}
	segs := make([]*capture.Segment, len(msgs))
	for i, m := range msgs {
		segs[i] = &capture.Segment{Dir: capture.Direction(i & 1), Data: []byte(m), Len: len(m)}
	}
	parsertest.Bench(b, p, len(segs), segs...)
}
