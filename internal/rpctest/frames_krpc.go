package rpctest

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// KRPCMeta is KRPC's extended header.
type KRPCMeta struct {
	Direction                   int32 // 1 request, 2 response
	Service, Msg, Sequence      int32
	Timeout, RetCode            int32
	TraceID, SpanID, ParentSpan string
}

// Encode returns the frame with body.
func (m *KRPCMeta) Encode(body []byte) []byte {
	var h []byte
	for _, f := range []struct {
		n protowire.Number
		v int32
	}{{1, m.Direction}, {2, m.Service}, {3, m.Msg}, {4, m.Sequence}, {5, m.Timeout}, {6, m.RetCode}} {
		if f.v != 0 {
			h = protowire.AppendTag(h, f.n, protowire.VarintType)
			h = protowire.AppendVarint(h, uint64(int64(f.v)))
		}
	}
	if m.TraceID != "" {
		var t []byte
		t = protowire.AppendTag(t, 2, protowire.BytesType)
		t = protowire.AppendString(t, m.TraceID)
		if m.ParentSpan != "" {
			t = protowire.AppendTag(t, 3, protowire.BytesType)
			t = protowire.AppendString(t, m.ParentSpan)
		}
		t = protowire.AppendTag(t, 4, protowire.BytesType)
		t = protowire.AppendString(t, m.SpanID)
		h = protowire.AppendTag(h, 7, protowire.BytesType)
		h = protowire.AppendBytes(h, t)
	}
	b := make([]byte, 8, 8+len(h)+len(body))
	b[0], b[1] = 'K', 'R'
	binary.BigEndian.PutUint16(b[2:], uint16(len(h)))
	binary.BigEndian.PutUint32(b[4:], uint32(len(h)+len(body)))
	b = append(b, h...)
	return append(b, body...)
}

// KRPCFrameLen is the length of the frame at the start of b.
func KRPCFrameLen(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	return 8 + int(binary.BigEndian.Uint32(b[4:]))
}

// KRPCDecode reads a frame's meta.
func KRPCDecode(b []byte) (m KRPCMeta) {
	h := b[8 : 8+int(binary.BigEndian.Uint16(b[2:]))]
	for len(h) > 0 {
		num, typ, n := protowire.ConsumeTag(h)
		if n < 0 {
			return
		}
		h = h[n:]
		if typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(h)
			switch num {
			case 1:
				m.Direction = int32(v)
			case 2:
				m.Service = int32(v)
			case 3:
				m.Msg = int32(v)
			case 4:
				m.Sequence = int32(v)
			case 6:
				m.RetCode = int32(v)
			}
		}
		n = protowire.ConsumeFieldValue(num, typ, h)
		if n < 0 {
			return
		}
		h = h[n:]
	}
	return
}

// KRPCResult returns a KRPC response body with the conventional retCode
// (1) and retMsg (2) fields.
func KRPCResult(code int32, msg string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(int64(code)))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, msg)
}

// ProtoString returns a protobuf message with one string field 1: a
// realistic payload.
func ProtoString(s string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
