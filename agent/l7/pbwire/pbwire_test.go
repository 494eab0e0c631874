package pbwire

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestWalk(t *testing.T) {
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 300)
	msg = protowire.AppendTag(msg, 2, protowire.Fixed32Type) // skipped
	msg = protowire.AppendFixed32(msg, 7)
	msg = protowire.AppendTag(msg, 3, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte("svc"))

	walk := func(b []byte, stopAt protowire.Number) (string, bool) {
		var got string
		ok := Walk(b, func(f Field) bool {
			got += fmt.Sprintf("%d:%d:%s ", f.Num, f.Varint, f.Bytes)
			return f.Num != stopAt
		})
		return got, ok
	}
	if got, ok := walk(msg, 0); got != "1:300: 3:0:svc " || !ok {
		t.Errorf("whole: %q %v", got, ok)
	}
	if got, ok := walk(msg, 1); got != "1:300: " || !ok {
		t.Errorf("stopped: %q %v", got, ok)
	}
	// Cut inside the bytes field: the fields before it were visited.
	if got, ok := walk(msg[:len(msg)-1], 0); got != "1:300: " || ok {
		t.Errorf("truncated: %q %v", got, ok)
	}
	if _, ok := walk([]byte{0xff}, 0); ok {
		t.Error("garbage accepted")
	}
}
