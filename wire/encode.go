package wire

import (
	"fmt"
	"net/netip"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightline-io/sightline/flowlog"
)

// The agent encodes batches straight from flowlog rows into the
// sightlinepb.L7Batch wire format. Going through ToProto and proto.Marshal
// allocated a message, its strings and its map per row, and with the GC
// that followed was most of the agent's CPU at moderate rates. The server
// decodes with the generated code, so the two encoders must agree:
// TestEncodeBatchMatchesProto and FuzzEncodeBatch hold them equal, and
// TestEncodeRowCoversEveryField fails when sightline.proto gains a field
// this file does not write.

// Field numbers of sightline.proto.
const (
	batchAgentID = 1
	batchRows    = 2
)

// encodedBatch is an L7Batch already in wire format, sent by rawCodec.
type encodedBatch struct {
	data []byte
	rows int
}

// batchEncoder encodes batches, reusing its buffers between calls (one
// goroutine: the shipper's).
type batchEncoder struct {
	row []byte // scratch for one row, before its length prefix
}

// encode returns the L7Batch encoding of rows, appended to dst[:0].
func (e *batchEncoder) encode(dst []byte, agentID string, rows []flowlog.L7FlowLog) []byte {
	dst = appendString(dst[:0], batchAgentID, agentID)
	for i := range rows {
		e.row = appendRow(e.row[:0], &rows[i])
		dst = protowire.AppendTag(dst, batchRows, protowire.BytesType)
		dst = protowire.AppendBytes(dst, e.row)
	}
	return dst
}

// appendRow appends the fields of one sightlinepb.L7FlowLog, with proto3's
// rules: zero scalars, empty strings and empty bytes are left out; optional
// fields are written when set. Strings are repaired to valid UTF-8, as
// ToProto does, because the receiver rejects invalid UTF-8.
func appendRow(b []byte, r *flowlog.L7FlowLog) []byte {
	b = appendUint(b, 1, r.ID)
	b = appendInt(b, 2, timeToMicros(r.Time))
	b = appendInt(b, 3, timeToMicros(r.StartTime))
	b = appendInt(b, 4, timeToMicros(r.EndTime))
	b = appendUint(b, 5, r.ResponseDuration)
	b = appendString(b, 6, r.AgentID)
	b = appendString(b, 7, r.Host)
	b = appendUint(b, 8, uint64(r.OrgID))
	b = appendUint(b, 9, uint64(r.TeamID))
	b = appendUint(b, 10, uint64(r.SignalSource))
	b = appendString(b, 11, r.ObservationPoint)
	b = appendUint(b, 12, uint64(r.L7Protocol))
	b = appendString(b, 13, r.L7ProtocolStr)
	b = appendString(b, 14, r.Version)
	b = appendUint(b, 15, uint64(r.Type))
	if r.IsTLS {
		b = appendUint(b, 16, 1)
	}
	b = appendString(b, 17, r.RequestType)
	b = appendString(b, 18, r.RequestDomain)
	b = appendString(b, 19, r.RequestResource)
	b = appendString(b, 20, r.Endpoint)
	if r.RequestID != nil {
		b = protowire.AppendTag(b, 21, protowire.VarintType)
		b = protowire.AppendVarint(b, *r.RequestID)
	}
	b = appendUint(b, 22, uint64(r.ResponseStatus))
	if r.ResponseCode != nil {
		b = protowire.AppendTag(b, 23, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(*r.ResponseCode))) // int32: sign-extended
	}
	b = appendString(b, 24, r.ResponseException)
	b = appendString(b, 25, r.ResponseResult)
	b = appendInt(b, 26, r.RequestLength)
	b = appendInt(b, 27, r.ResponseLength)
	b = appendUint(b, 28, uint64(r.CapturedRequestByte))
	b = appendUint(b, 29, uint64(r.CapturedResponseByte))
	if r.SQLAffectedRows != nil {
		b = protowire.AppendTag(b, 30, protowire.VarintType)
		b = protowire.AppendVarint(b, *r.SQLAffectedRows)
	}
	b = appendString(b, 31, r.TraceID)
	b = appendString(b, 32, r.SpanID)
	b = appendString(b, 33, r.ParentSpanID)
	b = appendString(b, 34, r.XRequestID0)
	b = appendString(b, 35, r.XRequestID1)
	b = appendUint(b, 36, r.SyscallTraceIDRequest)
	b = appendUint(b, 37, r.SyscallTraceIDResponse)
	b = appendUint(b, 38, uint64(r.SyscallThread0))
	b = appendUint(b, 39, uint64(r.SyscallThread1))
	b = appendUint(b, 40, r.SyscallCoroutine0)
	b = appendUint(b, 41, r.SyscallCoroutine1)
	b = appendUint(b, 42, uint64(r.SyscallCapSeq0))
	b = appendUint(b, 43, uint64(r.SyscallCapSeq1))
	b = appendUint(b, 44, uint64(r.ReqTCPSeq))
	b = appendUint(b, 45, uint64(r.RespTCPSeq))
	if r.IP0.IsValid() {
		b = protowire.AppendTag(b, 46, protowire.BytesType)
		b = appendAddr(b, r.IP0)
	}
	if r.IP1.IsValid() {
		b = protowire.AppendTag(b, 47, protowire.BytesType)
		b = appendAddr(b, r.IP1)
	}
	b = appendUint(b, 48, uint64(r.ClientPort))
	b = appendUint(b, 49, uint64(r.ServerPort))
	b = appendUint(b, 50, uint64(r.Protocol))
	b = appendUint(b, 51, uint64(r.ProcessID0))
	b = appendUint(b, 52, uint64(r.ProcessID1))
	b = appendString(b, 53, r.ProcessKName0)
	b = appendString(b, 54, r.ProcessKName1)
	b = appendString(b, 55, r.ContainerID0)
	b = appendString(b, 56, r.ContainerID1)
	for k, v := range r.Attributes {
		// A map entry is a message {1: key, 2: value}.
		k, v = validUTF8(k), validUTF8(v)
		b = protowire.AppendTag(b, 57, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(k))+
			protowire.SizeTag(2)+protowire.SizeBytes(len(v))))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	return appendUint(b, num, uint64(v))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	if !utf8.ValidString(s) {
		s = validUTF8(s)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v4 := a.As4()
		return protowire.AppendBytes(b, v4[:])
	}
	v6 := a.As16()
	return protowire.AppendBytes(b, v6[:])
}

// rawCodec sends an *encodedBatch as it is and leaves every other message
// (the reply) to the standard proto codec. It keeps the proto codec's name,
// so the call's content type, and the server's decoding, are unchanged.
type rawCodec struct{ proto encoding.CodecV2 }

func newRawCodec() rawCodec {
	return rawCodec{proto: encoding.GetCodecV2(proto.Name)}
}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if eb, ok := v.(*encodedBatch); ok {
		return mem.BufferSlice{mem.SliceBuffer(eb.data)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*encodedBatch); ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into an encoded batch")
	}
	return c.proto.Unmarshal(data, v)
}

func (c rawCodec) Name() string { return c.proto.Name() }
