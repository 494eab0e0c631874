package mongodb

import (
	"bytes"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
)

// strCache returns the previous string when the bytes repeat, so a
// connection issuing the same commands allocates its names once.
type strCache struct{ s string }

func (c *strCache) get(b []byte) string {
	if len(b) > maxText {
		b = b[:maxText]
	}
	if string(b) != c.s {
		c.s = string(b)
	}
	return c.s
}

// commandName returns well-known command names as constants.
func commandName(b []byte) string {
	switch string(b) {
	case "find":
		return "find"
	case "insert":
		return "insert"
	case "update":
		return "update"
	case "delete":
		return "delete"
	case "aggregate":
		return "aggregate"
	case "getMore":
		return "getMore"
	case "count":
		return "count"
	case "distinct":
		return "distinct"
	case "findAndModify":
		return "findAndModify"
	case "hello":
		return "hello"
	case "isMaster":
		return "isMaster"
	case "ismaster":
		return "ismaster"
	case "ping":
		return "ping"
	case "endSessions":
		return "endSessions"
	case "killCursors":
		return "killCursors"
	case "saslStart":
		return "saslStart"
	case "saslContinue":
		return "saslContinue"
	case "buildInfo":
		return "buildInfo"
	case "listCollections":
		return "listCollections"
	case "listDatabases":
		return "listDatabases"
	case "listIndexes":
		return "listIndexes"
	case "createIndexes":
		return "createIndexes"
	case "create":
		return "create"
	case "drop":
		return "drop"
	case "commitTransaction":
		return "commitTransaction"
	case "abortTransaction":
		return "abortTransaction"
	}
	return ""
}

func (p *Parser) name(b []byte) string {
	if s := commandName(b); s != "" {
		return s
	}
	return p.cmd.get(b)
}

// command fills the request columns from a command document: its first key
// is the command, a string value the collection; "$db" is the database and
// "collection" names getMore's collection.
func (p *Parser) command(d *doc, m *l7.Message) {
	var coll, db []byte
	first := true
	for {
		typ, key, val, ok := d.next()
		if !ok {
			break
		}
		if first {
			first = false
			m.RequestType = p.name(key)
			if typ == bsonString {
				coll, _ = str(val)
			}
			continue
		}
		switch string(key) {
		case "$db":
			if typ == bsonString {
				db, _ = str(val)
			}
		case "collection":
			if typ == bsonString && coll == nil {
				coll, _ = str(val)
			}
		}
	}
	if db != nil {
		m.Domain = p.db.get(db)
	}
	p.setResource(m, coll)
}

// setResource sets Resource to the collection and Endpoint to
// "command collection" (or the command alone).
func (p *Parser) setResource(m *l7.Message, coll []byte) {
	if len(coll) == 0 {
		m.Endpoint = m.RequestType
		return
	}
	m.Resource = p.coll.get(coll)
	if m.RequestType != p.lastCmd || m.Resource != p.lastColl {
		p.lastCmd, p.lastColl = m.RequestType, m.Resource
		p.endpoint.s = m.RequestType + " " + m.Resource
	}
	m.Endpoint = p.endpoint.s
}

// legacyQuery parses OP_QUERY after its flags: a command on "db.$cmd"
// (possibly wrapped in $query), or a legacy find on "db.collection".
func (p *Parser) legacyQuery(b []byte, n int, m *l7.Message) {
	db, coll, rest, ok := namespace(b)
	if !ok {
		m.RequestType = "query"
		return
	}
	m.Domain = p.db.get(db)
	if string(coll) != "$cmd" {
		m.RequestType = "query"
		p.setResource(m, coll)
		return
	}
	if len(rest) < 8 {
		m.RequestType = "command"
		return
	}
	d, ok := newDoc(rest[8:], n)
	if ok {
		// Drivers wrap commands with read preferences in {$query: {...}}.
		save := d
		if typ, key, val, ok := d.next(); ok && typ == bsonDocument && (string(key) == "$query" || string(key) == "query") {
			if inner, ok := newDoc(val, len(val)); ok {
				d = inner
			} else {
				d = save
			}
		} else {
			d = save
		}
		p.command(&d, m)
	}
	if m.RequestType == "" {
		m.RequestType = "command"
	}
	if m.Domain == "" {
		m.Domain = p.db.get(db)
	}
}

// legacyWrite parses the removed opcodes OP_GET_MORE, OP_INSERT, OP_UPDATE,
// OP_DELETE and OP_KILL_CURSORS. All but OP_GET_MORE expect no reply.
func (p *Parser) legacyWrite(op int32, body []byte, m *l7.Message) {
	switch op {
	case opGetMore:
		m.RequestType = "getMore"
	case opInsert:
		m.RequestType, m.OneWay = "insert", true
	case opUpdate:
		m.RequestType, m.OneWay = "update", true
	case opDelete:
		m.RequestType, m.OneWay = "delete", true
	case opKillCursors:
		m.RequestType, m.OneWay = "killCursors", true
		m.Endpoint = m.RequestType
		return
	}
	if len(body) < 4 {
		m.Endpoint = m.RequestType
		return
	}
	db, coll, _, ok := namespace(body[4:])
	if !ok {
		m.Endpoint = m.RequestType
		return
	}
	m.Domain = p.db.get(db)
	p.setResource(m, coll)
}

// namespace splits the "db.collection" cstring at the start of b.
func namespace(b []byte) (db, coll, rest []byte, ok bool) {
	end := bytes.IndexByte(b[:min(len(b), 512)], 0)
	if end < 0 {
		return nil, nil, nil, false
	}
	ns := b[:end]
	dot := bytes.IndexByte(ns, '.')
	if dot <= 0 {
		return nil, nil, nil, false
	}
	return ns[:dot], ns[dot+1:], b[end+1:], true
}

// replyFields are the status fields of a reply document.
type replyFields struct {
	okSeen   bool
	ok       float64
	code     int32
	hasCode  bool
	codeName []byte
	errmsg   []byte
	n        int64
	hasN     bool
}

// reply fills the response columns from a reply document. ok:1 is success
// unless writeErrors or writeConcernError report a failure; ok:0 takes its
// status from the code (errorStatus). A document cut by the capture before
// its "ok" (replies put it last) is taken as success when it showed no
// error field; a whole document without "ok" fails to parse.
func (p *Parser) reply(d *doc, complete bool, m *l7.Message) {
	var f replyFields
	for {
		typ, key, val, ok := d.next()
		if !ok {
			break
		}
		switch string(key) {
		case "ok":
			f.ok, f.okSeen = number(typ, val)
		case "code":
			if v, ok := number(typ, val); ok {
				f.code, f.hasCode = int32(v), true
			}
		case "codeName":
			if typ == bsonString {
				f.codeName, _ = str(val)
			}
		case "errmsg", "$err":
			if typ == bsonString {
				f.errmsg, _ = str(val)
			}
		case "n":
			if v, ok := number(typ, val); ok && typ != bsonBool {
				f.n, f.hasN = int64(v), true
			}
		case "writeErrors":
			if typ == bsonArray && !f.hasCode {
				firstWriteError(val, &f)
			}
		case "writeConcernError":
			if typ == bsonDocument && !f.hasCode {
				if wd, ok := newDoc(val, len(val)); ok {
					errorFields(&wd, &f)
				}
			}
		}
	}
	if f.hasN && f.n >= 0 {
		m.SQLAffectedRows, m.HasAffectedRows = uint64(f.n), true
	}
	failed := f.okSeen && f.ok != 1 || f.hasCode
	switch {
	case failed:
		m.Code, m.HasCode = f.code, f.hasCode
		m.Status = flowlog.StatusServerError
		if f.hasCode {
			m.Status = errorStatus(f.code)
		}
		m.Exception = exception(&f)
	case f.okSeen:
		m.Status = flowlog.StatusSuccess
	case (d.truncated || !complete) && !d.bad:
		m.Status = flowlog.StatusSuccess
	default:
		m.Status = flowlog.StatusParseFailed
	}
}

// firstWriteError reads code, codeName and errmsg of the first element of
// a writeErrors array.
func firstWriteError(arr []byte, f *replyFields) {
	a, ok := newDoc(arr, len(arr))
	if !ok {
		return
	}
	typ, _, val, ok := a.next()
	if !ok || typ != bsonDocument {
		return
	}
	if wd, ok := newDoc(val, len(val)); ok {
		errorFields(&wd, f)
	}
}

func errorFields(d *doc, f *replyFields) {
	for {
		typ, key, val, ok := d.next()
		if !ok {
			return
		}
		switch string(key) {
		case "code":
			if v, ok := number(typ, val); ok {
				f.code, f.hasCode = int32(v), true
			}
		case "codeName":
			if typ == bsonString {
				f.codeName, _ = str(val)
			}
		case "errmsg":
			if typ == bsonString {
				f.errmsg, _ = str(val)
			}
		}
	}
}

// exception is the codeName, or else the error message up to its first
// '{': messages quote documents (duplicate keys, failed validation), and
// document values may be personal data.
func exception(f *replyFields) string {
	if len(f.codeName) > 0 {
		return string(f.codeName[:min(len(f.codeName), maxText)])
	}
	if f.hasCode && (f.code == 11000 || f.code == 11001) {
		return "DuplicateKey"
	}
	msg := f.errmsg
	if i := bytes.IndexByte(msg, '{'); i >= 0 {
		msg = msg[:i]
	}
	msg = bytes.TrimSpace(msg[:min(len(msg), maxText)])
	return string(msg)
}
