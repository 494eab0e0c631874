package mongodb

import (
	"bytes"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

const (
	out = capture.AtoB
	in  = capture.BtoA
)

type rec struct {
	dir  capture.Direction
	data []byte
	gap  int
}

type summary struct {
	Type      l7.MessageType
	Dir       capture.Direction
	Cmd       string
	DB        string
	Coll      string
	Endpoint  string
	ID        uint64
	OneWay    bool
	Code      int32
	HasCode   bool
	Status    flowlog.ResponseStatus
	Exception string
	Rows      int64 // -1: none
	Length    int64
	Captured  uint32
}

func run(t *testing.T, recs []rec) []summary {
	t.Helper()
	p := New(l7.Config{}).NewParser()
	var got []summary
	now := time.Unix(1700000000, 0)
	for i, r := range recs {
		seg := &capture.Segment{Dir: r.dir, Data: r.data, Len: len(r.data) + r.gap, Tuple: capture.Tuple{L4: 6},
			Start: now.Add(time.Duration(i) * time.Millisecond), End: now.Add(time.Duration(i)*time.Millisecond + 10)}
		p.Feed(seg, func(m *l7.Message) {
			if m.Protocol != flowlog.L7MongoDB || !m.HasRequestID {
				t.Fatalf("bad message %+v", m)
			}
			s := summary{Type: m.Type, Dir: m.Dir, Cmd: m.RequestType, DB: m.Domain, Coll: m.Resource, Endpoint: m.Endpoint,
				ID: m.RequestID, OneWay: m.OneWay, Code: m.Code, HasCode: m.HasCode, Status: m.Status, Exception: m.Exception,
				Rows: -1, Length: m.Length, Captured: m.Captured}
			if m.HasAffectedRows {
				s.Rows = int64(m.SQLAffectedRows)
			}
			got = append(got, s)
		})
	}
	return got
}

func check(t *testing.T, got, want []summary) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func req(dir capture.Direction, id uint64, cmd, db, coll string, msg []byte) summary {
	ep := cmd
	if coll != "" {
		ep = cmd + " " + coll
	}
	return summary{Type: l7.Request, Dir: dir, Cmd: cmd, DB: db, Coll: coll, Endpoint: ep, ID: id, Rows: -1,
		Length: int64(len(msg)), Captured: uint32(len(msg))}
}

func ok(dir capture.Direction, id uint64, rows int64, msg []byte) summary {
	return summary{Type: l7.Response, Dir: dir, ID: id, Status: flowlog.StatusSuccess, Rows: rows,
		Length: int64(len(msg)), Captured: uint32(len(msg))}
}

func fail(dir capture.Direction, id uint64, code int32, st flowlog.ResponseStatus, exc string, msg []byte) summary {
	return summary{Type: l7.Response, Dir: dir, ID: id, Code: code, HasCode: true, Status: st, Exception: exc, Rows: -1,
		Length: int64(len(msg)), Captured: uint32(len(msg))}
}

// fixtures is a realistic exchange set, as the Go driver sends it.
type fixtures struct {
	find, findReply, insert, insertReply, dup, dupReply, bogus, bogusReply []byte
	getMore, getMoreReply, hello, helloReply, shutdownReply                []byte
}

func newFixtures(t testing.TB) fixtures {
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{7}, 16)}}}
	var f fixtures
	f.find = buildMsg(11, 0, 0, mustBSON(t, bson.D{{Key: "find", Value: "users"}, {Key: "filter", Value: bson.D{{Key: "email", Value: "alice@example.com"}}},
		{Key: "lsid", Value: lsid}, {Key: "$db", Value: "shop"}}))
	f.findReply = buildMsg(101, 11, 0, mustBSON(t, bson.D{{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}},
		{Key: "id", Value: int64(0)}, {Key: "ns", Value: "shop.users"}}}, {Key: "ok", Value: 1.0}}))
	f.insert = buildMsg(12, 0, 0, mustBSON(t, bson.D{{Key: "insert", Value: "users"}, {Key: "ordered", Value: true}, {Key: "$db", Value: "shop"}}),
		docSeq{"documents", [][]byte{mustBSON(t, bson.D{{Key: "_id", Value: 2}, {Key: "name", Value: "bob"}})}})
	f.insertReply = buildMsg(102, 12, 0, mustBSON(t, bson.D{{Key: "n", Value: int32(1)}, {Key: "ok", Value: 1.0}}))
	f.dup = buildMsg(13, 0, 0, mustBSON(t, bson.D{{Key: "insert", Value: "users"}, {Key: "$db", Value: "shop"}}),
		docSeq{"documents", [][]byte{mustBSON(t, bson.D{{Key: "_id", Value: 2}})}})
	f.dupReply = buildMsg(103, 13, 0, mustBSON(t, bson.D{{Key: "n", Value: int32(0)}, {Key: "writeErrors", Value: bson.A{bson.D{
		{Key: "index", Value: int32(0)}, {Key: "code", Value: int32(11000)},
		{Key: "errmsg", Value: "E11000 duplicate key error collection: shop.users index: _id_ dup key: { _id: 2 }"}}}}, {Key: "ok", Value: 1.0}}))
	f.bogus = buildMsg(14, 0, 0, mustBSON(t, bson.D{{Key: "bogusCommand", Value: int32(1)}, {Key: "$db", Value: "shop"}}))
	f.bogusReply = buildMsg(104, 14, 0, mustBSON(t, bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "no such command: 'bogusCommand'"},
		{Key: "code", Value: int32(59)}, {Key: "codeName", Value: "CommandNotFound"}}))
	f.getMore = buildMsg(15, 0, 0, mustBSON(t, bson.D{{Key: "getMore", Value: int64(42)}, {Key: "collection", Value: "users"}, {Key: "$db", Value: "shop"}}))
	f.getMoreReply = buildMsg(105, 15, 0, mustBSON(t, bson.D{{Key: "cursor", Value: bson.D{{Key: "nextBatch", Value: bson.A{}}, {Key: "id", Value: int64(0)}}}, {Key: "ok", Value: int32(1)}}))
	f.hello = opQueryMsg(1, "admin.$cmd", mustBSON(t, bson.D{{Key: "isMaster", Value: int32(1)}, {Key: "helloOk", Value: true},
		{Key: "client", Value: bson.D{{Key: "driver", Value: bson.D{{Key: "name", Value: "mongo-go-driver"}}}}}}))
	f.helloReply = opReplyMsg(100, 1, 0, mustBSON(t, bson.D{{Key: "ismaster", Value: true}, {Key: "maxWireVersion", Value: int32(21)}, {Key: "ok", Value: 1.0}}))
	f.shutdownReply = buildMsg(106, 11, 0, mustBSON(t, bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "shutting down"},
		{Key: "code", Value: int32(91)}, {Key: "codeName", Value: "ShutdownInProgress"}}))
	return f
}

func TestParser(t *testing.T) {
	f := newFixtures(t)
	wFind := []summary{req(out, 11, "find", "shop", "users", f.find), ok(in, 11, -1, f.findReply)}
	oneWay := buildMsg(16, 0, flagMoreToCome, mustBSON(t, bson.D{{Key: "insert", Value: "logs"}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: int32(0)}}}, {Key: "$db", Value: "app"}}))
	wOneWay := req(out, 16, "insert", "app", "logs", oneWay)
	wOneWay.OneWay = true
	checksummed := buildMsg(17, 0, flagChecksum, mustBSON(t, bson.D{{Key: "ping", Value: int32(1)}, {Key: "$db", Value: "admin"}}))
	wrapped := opQueryMsg(2, "admin.$cmd", mustBSON(t, bson.D{{Key: "$query", Value: bson.D{{Key: "hello", Value: int32(1)}}}, {Key: "$readPreference", Value: bson.D{}}}))
	legacyFind := opQueryMsg(3, "shop.users", mustBSON(t, bson.D{{Key: "email", Value: "x"}}))
	queryFailure := opReplyMsg(110, 3, 2, mustBSON(t, bson.D{{Key: "$err", Value: "bad query: { email: 1 }"}, {Key: "code", Value: int32(2)}}))
	bigReply := buildMsg(120, 11, 0, mustBSON(t, bson.D{{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: bson.A{bytes.Repeat([]byte("x"), 5000)}},
		{Key: "id", Value: int64(0)}}}, {Key: "ok", Value: 1.0}}))
	noOK := buildMsg(121, 11, 0, mustBSON(t, bson.D{{Key: "weird", Value: int32(1)}}))

	tests := []struct {
		name string
		recs []rec
		want []summary
	}{
		{"find", []rec{{out, f.find, 0}, {in, f.findReply, 0}}, wFind},
		{"insert with a document sequence, duplicate key, unknown command, getMore",
			[]rec{{out, f.insert, 0}, {in, f.insertReply, 0}, {out, f.dup, 0}, {in, f.dupReply, 0}, {out, f.bogus, 0}, {in, f.bogusReply, 0}, {out, f.getMore, 0}, {in, f.getMoreReply, 0}},
			[]summary{
				req(out, 12, "insert", "shop", "users", f.insert), ok(in, 12, 1, f.insertReply),
				req(out, 13, "insert", "shop", "users", f.dup),
				func() summary {
					s := fail(in, 13, 11000, flowlog.StatusClientError, "DuplicateKey", f.dupReply)
					s.Rows = 0
					return s
				}(),
				req(out, 14, "bogusCommand", "shop", "", f.bogus), fail(in, 14, 59, flowlog.StatusClientError, "CommandNotFound", f.bogusReply),
				req(out, 15, "getMore", "shop", "users", f.getMore), ok(in, 15, -1, f.getMoreReply),
			}},
		{"server error", []rec{{out, f.find, 0}, {in, f.shutdownReply, 0}}, []summary{wFind[0], fail(in, 11, 91, flowlog.StatusServerError, "ShutdownInProgress", f.shutdownReply)}},
		{"legacy handshake", []rec{{out, f.hello, 0}, {in, f.helloReply, 0}, {out, wrapped, 0}}, []summary{
			req(out, 1, "isMaster", "admin", "", f.hello), ok(in, 1, -1, f.helloReply), req(out, 2, "hello", "admin", "", wrapped)}},
		{"legacy find and query failure", []rec{{out, legacyFind, 0}, {in, queryFailure, 0}}, []summary{
			req(out, 3, "query", "shop", "users", legacyFind), fail(in, 3, 2, flowlog.StatusClientError, "bad query:", queryFailure)}},
		{"moreToCome and checksum", []rec{{out, oneWay, 0}, {out, checksummed, 0}}, []summary{wOneWay, req(out, 17, "ping", "admin", "", checksummed)}},
		{"server side: request in, reply out", []rec{{in, f.find, 0}, {out, f.findReply, 0}}, []summary{
			req(in, 11, "find", "shop", "users", f.find), ok(out, 11, -1, f.findReply)}},
		{"pipelined", []rec{{out, append(append([]byte{}, f.find...), f.bogus...), 0}, {in, append(append([]byte{}, f.bogusReply...), f.findReply...), 0}}, []summary{
			wFind[0], req(out, 14, "bogusCommand", "shop", "", f.bogus), fail(in, 14, 59, flowlog.StatusClientError, "CommandNotFound", f.bogusReply), wFind[1]}},
		{"reply cut by the capture before ok", []rec{{out, f.find, 0}, {in, bigReply[:1024], len(bigReply) - 1024}, {out, f.bogus, 0}}, []summary{
			wFind[0], {Type: l7.Response, Dir: in, ID: 11, Status: flowlog.StatusSuccess, Rows: -1, Length: int64(len(bigReply)), Captured: 1024},
			req(out, 14, "bogusCommand", "shop", "", f.bogus)}},
		{"whole reply without ok", []rec{{in, noOK, 0}}, []summary{{Type: l7.Response, Dir: in, ID: 11, Status: flowlog.StatusParseFailed, Rows: -1, Length: int64(len(noOK)), Captured: uint32(len(noOK))}}},
		{"header read alone (server side)", []rec{{in, f.find[:16], 0}, {in, f.find[16:], 0}, {out, f.findReply, 0}}, []summary{
			req(in, 11, "find", "shop", "users", f.find), ok(out, 11, -1, f.findReply)}},
		{"mid-message start resyncs on the next segment", []rec{{out, f.find[20:], 0}, {out, f.bogus, 0}, {in, f.bogusReply, 0}}, []summary{
			req(out, 14, "bogusCommand", "shop", "", f.bogus), fail(in, 14, 59, flowlog.StatusClientError, "CommandNotFound", f.bogusReply)}},
		{"garbage: huge length, unknown opcode", []rec{{out, []byte{0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0}, 0},
			{out, []byte{40, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0}, 0}, {out, f.find, 0}, {in, f.findReply, 0}}, wFind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, run(t, tt.recs), tt.want)
		})
	}

	t.Run("split at every byte boundary", func(t *testing.T) {
		for i := 1; i < len(f.find); i++ {
			j := 1 + i%(len(f.findReply)-1)
			got := run(t, []rec{{out, f.find[:i], 0}, {out, f.find[i:], 0}, {in, f.findReply[:j], 0}, {in, f.findReply[j:], 0}})
			check(t, got, wFind)
		}
	})
}

func TestCompressed(t *testing.T) {
	f := newFixtures(t)
	for _, id := range []byte{0, 2, 3} {
		reqC, respC := compressed(t, f.bogus, id), compressed(t, f.bogusReply, id)
		got := run(t, []rec{{out, reqC, 0}, {in, respC, 0}})
		want := []summary{req(out, 14, "bogusCommand", "shop", "", reqC), fail(in, 14, 59, flowlog.StatusClientError, "CommandNotFound", respC)}
		check(t, got, want)
	}
	reqC, respC := compressed(t, f.find, 1), compressed(t, f.findReply, 1)
	got := run(t, []rec{{out, reqC, 0}, {in, respC, 0}})
	r := req(out, 11, "OP_COMPRESSED", "", "", reqC)
	r.Endpoint = ""
	check(t, got, []summary{r, {Type: l7.Response, Dir: in, ID: 11, Status: flowlog.StatusParseFailed, Exception: "snappy", Rows: -1,
		Length: int64(len(respC)), Captured: uint32(len(respC))}})
}

func TestHostileBSON(t *testing.T) {
	// Deep nesting costs nothing: values are skipped by size.
	var nested any = bson.D{{Key: "x", Value: 1}}
	for range 90 {
		nested = bson.D{{Key: "a", Value: nested}}
	}
	deep := buildMsg(30, 0, 0, mustBSON(t, bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: nested}, {Key: "$db", Value: "d"}}))
	// A body whose inner length lies.
	lying := append([]byte{}, deep...)
	lying[21] = 0xff
	lying[22] = 0xff
	got := run(t, []rec{{out, deep, 0}, {out, lying, 0}, {in, buildMsg(31, 30, 0, []byte{5, 0, 0, 0, 0}), 0}})
	want := []summary{req(out, 30, "find", "d", "c", deep), {Type: l7.Request, Dir: out, Cmd: "OP_MSG", Endpoint: "", ID: 30, Rows: -1, Length: int64(len(lying)), Captured: uint32(len(lying))},
		{Type: l7.Response, Dir: in, ID: 30, Status: flowlog.StatusParseFailed, Rows: -1, Length: 26, Captured: 26}}
	check(t, got, want)
}

func TestInfer(t *testing.T) {
	f := newFixtures(t)
	p := New(l7.Config{})
	tests := []struct {
		name string
		data []byte
		want l7.Inference
	}{
		{"op_msg request", f.find, l7.IsRequest},
		{"op_msg reply", f.findReply, l7.IsResponse},
		{"op_query handshake", f.hello, l7.IsRequest},
		{"op_reply", f.helloReply, l7.IsResponse},
		{"compressed", compressed(t, f.find, 3), l7.IsRequest},
		{"header only request", f.find[:16], l7.IsRequest},
		{"header only reply", f.findReply[:16], l7.NeedMore},
		{"short", f.find[:10], l7.NeedMore},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), l7.NotMine},
		{"tls", []byte{0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0}, l7.NotMine},
		{"bad flags", func() []byte { b := append([]byte{}, f.find...); b[17] = 0x80; return b }(), l7.NotMine},
		{"bad section kind", func() []byte { b := append([]byte{}, f.find...); b[20] = 2; return b }(), l7.NotMine},
		{"body longer than message", func() []byte { b := append([]byte{}, f.find...); b[23] = 1; return b }(), l7.NotMine},
		{"zeros", make([]byte, 64), l7.NotMine},
	}
	for _, tt := range tests {
		if got := p.Infer(tt.data, 6); got != tt.want {
			t.Errorf("%s: Infer = %v, want %v", tt.name, got, tt.want)
		}
	}
	if p.Infer(f.find, 17) != l7.NotMine {
		t.Error("claimed UDP")
	}
}
