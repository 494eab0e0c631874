package memcached

import (
	"encoding/binary"
	"errors"
)

// Binary protocol header (24 bytes): magic, opcode, key length (2), extras
// length, data type, vbucket id / status (2), total body length (4), opaque
// (4), CAS (8).
const (
	magicRequest  = 0x80
	magicResponse = 0x81
	headerLen     = 24
	maxBody       = 64 << 20
)

var errNotFrame = errors.New("memcached: not a binary frame")

// frameLen is the stream.FrameLen of binary frames.
func frameLen(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if b[0] != magicRequest && b[0] != magicResponse {
		return 0, errNotFrame
	}
	if len(b) < headerLen {
		return 0, nil
	}
	keyLen := int(binary.BigEndian.Uint16(b[2:4]))
	extLen := int(b[4])
	body := binary.BigEndian.Uint32(b[8:12])
	if b[5] != 0 || body > maxBody || uint32(keyLen+extLen) > body || opcodeName(b[1]) == "" {
		return 0, errNotFrame
	}
	return headerLen + int(body), nil
}

// opcodes names the binary opcodes like the text commands they mirror.
var opcodes = [...]string{
	0x00: "get", 0x01: "set", 0x02: "add", 0x03: "replace", 0x04: "delete", 0x05: "incr", 0x06: "decr",
	0x07: "quit", 0x08: "flush_all", 0x09: "getq", 0x0a: "noop", 0x0b: "version", 0x0c: "getk", 0x0d: "getkq",
	0x0e: "append", 0x0f: "prepend", 0x10: "stats", 0x11: "setq", 0x12: "addq", 0x13: "replaceq",
	0x14: "deleteq", 0x15: "incrq", 0x16: "decrq", 0x17: "quitq", 0x18: "flushq", 0x19: "appendq",
	0x1a: "prependq", 0x1b: "verbosity", 0x1c: "touch", 0x1d: "gat", 0x1e: "gatq", 0x20: "sasl_list_mechs",
	0x21: "sasl_auth", 0x22: "sasl_step", 0x23: "gatk", 0x24: "gatkq",
}

func opcodeName(op byte) string {
	if int(op) < len(opcodes) {
		return opcodes[op]
	}
	return ""
}

// quiet reports whether an opcode's success is not answered (GETQ misses,
// SETQ successes ...): such requests are emitted one-way and their
// occasional replies are not emitted, since they match no pending request.
func quiet(op byte) bool {
	switch op {
	case 0x09, 0x0d, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1e, 0x24:
		return true
	}
	return false
}

// retrieval reports whether an opcode reads a value (hit/miss result).
func retrieval(op byte) bool {
	switch op {
	case 0x00, 0x0c, 0x1d, 0x23:
		return true
	}
	return false
}

// statusName names a response status; "" for an unknown one.
func statusName(s uint16) string {
	switch s {
	case 0x00:
		return "No error"
	case 0x01:
		return "Key not found"
	case 0x02:
		return "Key exists"
	case 0x03:
		return "Value too large"
	case 0x04:
		return "Invalid arguments"
	case 0x05:
		return "Item not stored"
	case 0x06:
		return "Incr/Decr on non-numeric value"
	case 0x07:
		return "The vbucket belongs to another server"
	case 0x08:
		return "Authentication error"
	case 0x09:
		return "Authentication continue"
	case 0x20:
		return "Authentication required"
	case 0x21:
		return "Further authentication steps required"
	case 0x81:
		return "Unknown command"
	case 0x82:
		return "Out of memory"
	case 0x83:
		return "Not supported"
	case 0x84:
		return "Internal error"
	case 0x85:
		return "Busy"
	case 0x86:
		return "Temporary failure"
	}
	return ""
}
