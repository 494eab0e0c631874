// Package pbwire walks protobuf messages field by field without a schema,
// for parsers that read a few fields of an RPC framework's meta header
// (bRPC's RpcMeta, KRPC's meta) from bytes that may be cut short by the
// capture.
package pbwire

import "google.golang.org/protobuf/encoding/protowire"

// Field is one varint or length-delimited field of a message.
type Field struct {
	Num  protowire.Number
	Type protowire.Type // protowire.VarintType or protowire.BytesType
	// Varint holds a varint field's value, Bytes a length-delimited one's
	// (aliasing the message).
	Varint uint64
	Bytes  []byte
}

// Walk calls fn for each varint and length-delimited field of msg in order,
// skipping fields of other wire types; fn returning false stops the walk.
// Walk reports false when msg is malformed or truncated before the end (the
// fields before that point have been visited).
func Walk(msg []byte, fn func(Field) bool) bool {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return false
		}
		msg = msg[n:]
		f := Field{Num: num, Type: typ}
		switch typ {
		case protowire.VarintType:
			f.Varint, n = protowire.ConsumeVarint(msg)
		case protowire.BytesType:
			f.Bytes, n = protowire.ConsumeBytes(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return false
		}
		msg = msg[n:]
		if (typ == protowire.VarintType || typ == protowire.BytesType) && !fn(f) {
			return true
		}
	}
	return true
}
