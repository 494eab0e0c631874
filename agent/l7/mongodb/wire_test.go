package mongodb

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/zstd"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Builders of wire messages for the tests and the test server.

func mustBSON(t testing.TB, d any) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func header(b []byte, reqID, respTo, op int32) []byte {
	b = binary.LittleEndian.AppendUint32(b, 0) // length, patched by finish
	b = binary.LittleEndian.AppendUint32(b, uint32(reqID))
	b = binary.LittleEndian.AppendUint32(b, uint32(respTo))
	return binary.LittleEndian.AppendUint32(b, uint32(op))
}

func finish(b []byte) []byte {
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

type docSeq struct {
	id   string
	docs [][]byte
}

// buildMsg builds an OP_MSG with a body section and optional document
// sequences (kind 1), as drivers send inserts.
func buildMsg(reqID, respTo int32, flags uint32, body []byte, seqs ...docSeq) []byte {
	b := header(nil, reqID, respTo, opMsg)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = append(b, 0)
	b = append(b, body...)
	for _, s := range seqs {
		b = append(b, 1)
		start := len(b)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = append(append(b, s.id...), 0)
		for _, d := range s.docs {
			b = append(b, d...)
		}
		binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start))
	}
	if flags&flagChecksum != 0 {
		b = append(b, 0, 0, 0, 0) // the parser does not verify it
	}
	return finish(b)
}

func opQueryMsg(reqID int32, ns string, query []byte) []byte {
	b := header(nil, reqID, 0, opQuery)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(append(b, ns...), 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0xffffffff) // numberToReturn -1
	return finish(append(b, query...))
}

func opReplyMsg(reqID, respTo int32, flags uint32, docs ...[]byte) []byte {
	b := header(nil, reqID, respTo, opReply)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(docs)))
	for _, d := range docs {
		b = append(b, d...)
	}
	return finish(b)
}

// compressed wraps msg in OP_COMPRESSED with compressor id (0 noop, 1
// snappy — not really compressed here, 2 zlib, 3 zstd).
func compressed(t testing.TB, msg []byte, id byte) []byte {
	t.Helper()
	inner := msg[headerLen:]
	var data []byte
	switch id {
	case 2:
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		w.Write(inner)
		w.Close()
		data = buf.Bytes()
	case 3:
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		data = enc.EncodeAll(inner, nil)
	default:
		data = inner
	}
	b := header(nil, int32(binary.LittleEndian.Uint32(msg[4:])), int32(binary.LittleEndian.Uint32(msg[8:])), opCompressed)
	b = binary.LittleEndian.AppendUint32(b, binary.LittleEndian.Uint32(msg[12:]))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(inner)))
	b = append(b, id)
	return finish(append(b, data...))
}
