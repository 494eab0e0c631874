package memcached

import "bytes"

// kind groups text commands by how they are framed and answered.
type kind uint8

const (
	kindNone     kind = iota
	kindStorage       // set/add/replace/append/prepend <key> <flags> <exptime> <bytes> [noreply] + data
	kindCas           // cas <key> <flags> <exptime> <bytes> <cas> [noreply] + data
	kindRetrieve      // get/gets <key>*
	kindTouchGet      // gat/gats <exptime> <key>*
	kindKeyed         // delete/incr/decr/touch <key> ... [noreply]
	kindMetaSet       // ms <key> <datalen> <flags>* + data
	kindMeta          // mg/md/ma/me <key> <flags>*
	kindOther         // stats, version, flush_all, verbosity, mn, ...
	kindQuit          // quit: no reply
)

// command describes a text command; names are constants, so request types
// cost no allocation.
type command struct {
	name string
	kind kind
}

var textCommands = map[string]command{}

func init() {
	add := func(k kind, names ...string) {
		for _, n := range names {
			textCommands[n] = command{name: n, kind: k}
		}
	}
	add(kindStorage, "set", "add", "replace", "append", "prepend")
	add(kindCas, "cas")
	add(kindRetrieve, "get", "gets")
	add(kindTouchGet, "gat", "gats")
	add(kindKeyed, "delete", "incr", "decr", "touch")
	add(kindMetaSet, "ms")
	add(kindMeta, "mg", "md", "ma", "me")
	add(kindOther, "stats", "version", "flush_all", "verbosity", "mn", "cache_memlimit", "shutdown",
		"lru_crawler", "slabs", "lru", "misbehave")
	add(kindQuit, "quit")
}

func commandKind(w []byte) kind {
	if c, ok := textCommands[string(w)]; ok {
		return c.kind
	}
	return kindNone
}

// maxFields bounds the tokens of one line that are looked at.
const maxFields = 16

// fields splits a line on spaces without allocating.
type fields struct {
	tok [maxFields][]byte
	n   int // tokens kept (at most maxFields)
	all int // tokens in the line
}

func (f *fields) split(line []byte) {
	f.n, f.all = 0, 0
	for len(line) > 0 {
		for len(line) > 0 && line[0] == ' ' {
			line = line[1:]
		}
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			i = len(line)
		}
		if f.n < maxFields {
			f.tok[f.n] = line[:i]
			f.n++
		}
		f.all++
		line = line[i:]
	}
}

func (f *fields) get(i int) []byte {
	if i < f.n {
		return f.tok[i]
	}
	return nil
}

// last returns the last kept token.
func (f *fields) last() []byte { return f.get(f.n - 1) }

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validKey checks a key: 1-250 printable bytes.
func validKey(b []byte) bool {
	if len(b) == 0 || len(b) > 250 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validCommand checks a command line's shape.
func validCommand(k kind, f *fields) bool {
	switch k {
	case kindStorage, kindCas:
		want := 5
		if k == kindCas {
			want = 6
		}
		if f.all != want && !(f.all == want+1 && string(f.get(want)) == "noreply") {
			return false
		}
		for i := 2; i < want; i++ {
			if _, ok := atoi(f.get(i)); !ok && !(i == 3 && len(f.get(i)) > 1 && f.get(i)[0] == '-') {
				return false
			}
		}
		return validKey(f.get(1))
	case kindRetrieve, kindKeyed, kindMeta, kindMetaSet:
		return f.all >= 2 && validKey(f.get(1))
	case kindTouchGet:
		return f.all >= 3 && validKey(f.get(2))
	}
	return true
}

// dataLen returns the data block length a command line announces (-1: none).
func dataLen(k kind, f *fields) int64 {
	var b []byte
	switch k {
	case kindStorage, kindCas:
		b = f.get(4)
	case kindMetaSet:
		b = f.get(2)
	default:
		return -1
	}
	n, ok := atoi(b)
	if !ok {
		return -1
	}
	return n
}
