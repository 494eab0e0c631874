package rpctest

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// BRPCRequest is a baidu_std request.
type BRPCRequest struct {
	ID                      uint64
	Service, Method         string
	LogID                   uint64
	TraceID, SpanID, Parent uint64
	RequestID               string
	Payload                 []byte
	Attachment              []byte
}

// Encode returns the frame.
func (q *BRPCRequest) Encode() []byte {
	var rm []byte
	rm = protowire.AppendTag(rm, 1, protowire.BytesType)
	rm = protowire.AppendString(rm, q.Service)
	rm = protowire.AppendTag(rm, 2, protowire.BytesType)
	rm = protowire.AppendString(rm, q.Method)
	for _, f := range []struct {
		n protowire.Number
		v uint64
	}{{3, q.LogID}, {4, q.TraceID}, {5, q.SpanID}, {6, q.Parent}} {
		if f.v != 0 {
			rm = protowire.AppendTag(rm, f.n, protowire.VarintType)
			rm = protowire.AppendVarint(rm, f.v)
		}
	}
	if q.RequestID != "" {
		rm = protowire.AppendTag(rm, 7, protowire.BytesType)
		rm = protowire.AppendString(rm, q.RequestID)
	}
	var meta []byte
	meta = protowire.AppendTag(meta, 1, protowire.BytesType)
	meta = protowire.AppendBytes(meta, rm)
	meta = appendBRPCTail(meta, q.ID, len(q.Attachment))
	return brpcFrame(meta, q.Payload, q.Attachment)
}

// BRPCResponse returns a response frame.
func BRPCResponse(id uint64, code int32, text string, payload []byte) []byte {
	var rm []byte
	if code != 0 {
		rm = protowire.AppendTag(rm, 1, protowire.VarintType)
		rm = protowire.AppendVarint(rm, uint64(int64(code)))
	}
	if text != "" {
		rm = protowire.AppendTag(rm, 2, protowire.BytesType)
		rm = protowire.AppendString(rm, text)
	}
	var meta []byte
	meta = protowire.AppendTag(meta, 2, protowire.BytesType)
	meta = protowire.AppendBytes(meta, rm)
	meta = appendBRPCTail(meta, id, 0)
	return brpcFrame(meta, payload, nil)
}

func appendBRPCTail(meta []byte, id uint64, attachment int) []byte {
	meta = protowire.AppendTag(meta, 4, protowire.VarintType)
	meta = protowire.AppendVarint(meta, id)
	if attachment > 0 {
		meta = protowire.AppendTag(meta, 5, protowire.VarintType)
		meta = protowire.AppendVarint(meta, uint64(attachment))
	}
	return meta
}

func brpcFrame(meta, payload, attachment []byte) []byte {
	b := make([]byte, 12, 12+len(meta)+len(payload)+len(attachment))
	copy(b, "PRPC")
	binary.BigEndian.PutUint32(b[4:], uint32(len(meta)+len(payload)+len(attachment)))
	binary.BigEndian.PutUint32(b[8:], uint32(len(meta)))
	b = append(b, meta...)
	b = append(b, payload...)
	return append(b, attachment...)
}

// BRPCFrameLen is the length of the frame at the start of b.
func BRPCFrameLen(b []byte) int {
	if len(b) < 12 {
		return 0
	}
	return 12 + int(binary.BigEndian.Uint32(b[4:]))
}

// BRPCMeta returns a frame's correlation id and whether it carries a request.
func BRPCMeta(b []byte) (id uint64, request bool, code int64, text string) {
	meta := b[12 : 12+int(binary.BigEndian.Uint32(b[8:]))]
	for len(meta) > 0 {
		num, typ, n := protowire.ConsumeTag(meta)
		if n < 0 {
			return
		}
		meta = meta[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			request = true
		case num == 4 && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(meta)
			id = v
		case num == 2 && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(meta)
			for len(v) > 0 {
				f, t, k := protowire.ConsumeTag(v)
				if k < 0 {
					break
				}
				v = v[k:]
				if f == 1 && t == protowire.VarintType {
					c, _ := protowire.ConsumeVarint(v)
					code = int64(c)
				}
				if f == 2 && t == protowire.BytesType {
					s, _ := protowire.ConsumeBytes(v)
					text = string(s)
				}
				k = protowire.ConsumeFieldValue(f, t, v)
				if k < 0 {
					break
				}
				v = v[k:]
			}
		}
		n = protowire.ConsumeFieldValue(num, typ, meta)
		if n < 0 {
			return
		}
		meta = meta[n:]
	}
	return
}
