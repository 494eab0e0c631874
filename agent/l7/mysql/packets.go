package mysql

// maxPacket is the largest payload length; a packet of exactly this length
// is continued by the next one.
const maxPacket = 0xffffff

// Command bytes.
const (
	comQuit             = 0x01
	comInitDB           = 0x02
	comQuery            = 0x03
	comFieldList        = 0x04
	comCreateDB         = 0x05
	comDropDB           = 0x06
	comRefresh          = 0x07
	comStatistics       = 0x09
	comProcessInfo      = 0x0a
	comProcessKill      = 0x0c
	comDebug            = 0x0d
	comPing             = 0x0e
	comChangeUser       = 0x11
	comBinlogDump       = 0x12
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtReset        = 0x1a
	comSetOption        = 0x1b
	comStmtFetch        = 0x1c
	comResetConnection  = 0x1f
	comBinlogDumpGTID   = 0x1e
	comStmtBulkExecute  = 0xfa // MariaDB
)

// Capability flags.
const (
	capConnectWithDB      = 0x00000008
	capCompress           = 0x00000020
	capProtocol41         = 0x00000200
	capSSL                = 0x00000800
	capSecureConnection   = 0x00008000
	capPluginAuth         = 0x00080000
	capPluginAuthLenenc   = 0x00200000
	capDeprecateEOF       = 0x01000000
	capQueryAttributes    = 0x08000000
	capZstdCompression    = 0x04000000
	defaultServerCapFlags = capProtocol41 | capSecureConnection
)

// commandName names a command byte ("" for unknown ones). The names are the
// RequestType of commands that carry no SQL.
func commandName(c byte) string {
	switch c {
	case comQuit:
		return "QUIT"
	case comInitDB:
		return "USE"
	case comQuery:
		return "QUERY"
	case comFieldList:
		return "FIELD_LIST"
	case comCreateDB:
		return "CREATE_DB"
	case comDropDB:
		return "DROP_DB"
	case comRefresh:
		return "REFRESH"
	case comStatistics:
		return "STATISTICS"
	case comProcessInfo:
		return "PROCESS_INFO"
	case comProcessKill:
		return "PROCESS_KILL"
	case comDebug:
		return "DEBUG"
	case comPing:
		return "PING"
	case comChangeUser:
		return "CHANGE_USER"
	case comBinlogDump:
		return "BINLOG_DUMP"
	case comBinlogDumpGTID:
		return "BINLOG_DUMP_GTID"
	case comStmtPrepare:
		return "PREPARE"
	case comStmtExecute:
		return "EXECUTE"
	case comStmtSendLongData:
		return "STMT_SEND_LONG_DATA"
	case comStmtClose:
		return "STMT_CLOSE"
	case comStmtReset:
		return "STMT_RESET"
	case comSetOption:
		return "SET_OPTION"
	case comStmtFetch:
		return "STMT_FETCH"
	case comResetConnection:
		return "RESET_CONNECTION"
	case comStmtBulkExecute:
		return "STMT_BULK_EXECUTE"
	}
	return ""
}

// oneWay reports whether the server never answers the command.
func oneWay(c byte) bool {
	return c == comQuit || c == comStmtClose || c == comStmtSendLongData
}

func plen(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }

func u16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func u32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// lenenc decodes a length-encoded integer at the start of b; n is the bytes
// it took, 0 when b is too short or starts with 0xfb/0xff (not integers).
func lenenc(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), 1
	case c == 0xfc && len(b) >= 3:
		return uint64(u16(b[1:])), 3
	case c == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4
	case c == 0xfe && len(b) >= 9:
		return uint64(u32(b[1:])) | uint64(u32(b[5:]))<<32, 9
	}
	return 0, 0
}

// cstring returns the NUL-terminated string at the start of b and the rest
// after the NUL; ok is false when there is no NUL.
func cstring(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// greeting is what the parser keeps of the server's HandshakeV10.
type greeting struct {
	version string
	caps    uint32
}

// parseGreeting decodes a HandshakeV10 payload (after the protocol byte).
func parseGreeting(p []byte) (g greeting, ok bool) {
	ver, rest, ok := cstring(p)
	if !ok || len(ver) == 0 || len(ver) > 64 {
		return g, false
	}
	g.version = string(ver)
	// connection id 4, auth data 8, filler 1, caps low 2.
	if len(rest) < 15 {
		return g, true
	}
	g.caps = uint32(u16(rest[13:]))
	// charset 1, status 2, caps high 2.
	if len(rest) >= 20 {
		g.caps |= uint32(u16(rest[18:])) << 16
	}
	return g, true
}

// login is what the parser keeps of a HandshakeResponse41: never the
// authentication data.
type login struct {
	caps uint32
	user string
	db   string
}

// parseLogin decodes a HandshakeResponse41 payload.
func parseLogin(p []byte) (l login, ok bool) {
	if len(p) < 32 {
		return l, false
	}
	l.caps = u32(p)
	if l.caps&capProtocol41 == 0 {
		return l, false // HandshakeResponse320: too old to bother
	}
	user, rest, ok := cstring(p[32:])
	if !ok || len(user) > 128 {
		return l, len(p) == 32 // 32 bytes: an SSL request
	}
	l.user = string(user)
	// Skip the auth response without reading it.
	switch {
	case l.caps&capPluginAuthLenenc != 0:
		n, k := lenenc(rest)
		if k == 0 || uint64(len(rest)-k) < n {
			return l, true
		}
		rest = rest[k+int(n):]
	case l.caps&capSecureConnection != 0:
		if len(rest) == 0 || len(rest)-1 < int(rest[0]) {
			return l, true
		}
		rest = rest[1+int(rest[0]):]
	default:
		_, r, ok := cstring(rest)
		if !ok {
			return l, true
		}
		rest = r
	}
	if l.caps&capConnectWithDB != 0 {
		if db, _, ok := cstring(rest); ok && len(db) <= 256 {
			l.db = string(db)
		}
	}
	return l, true
}

// okPacket decodes affected rows and status flags of an OK packet payload
// (starting with its 0x00 or 0xfe header).
func okPacket(p []byte) (affected uint64, status uint16, ok bool) {
	if len(p) < 3 {
		return 0, 0, false
	}
	affected, n := lenenc(p[1:])
	if n == 0 {
		return 0, 0, false
	}
	rest := p[1+n:]
	_, m := lenenc(rest)
	if m == 0 {
		return affected, 0, true
	}
	rest = rest[m:]
	if len(rest) >= 2 {
		status = u16(rest)
	}
	return affected, status, true
}

// errPacket decodes an ERR packet payload (starting with 0xff): the error
// code and "SQLSTATE: message" (or just the message before 4.1).
func errPacket(p []byte) (code uint16, state, msg []byte, ok bool) {
	if len(p) < 3 {
		return 0, nil, nil, false
	}
	code = u16(p[1:])
	rest := p[3:]
	if len(rest) >= 6 && rest[0] == '#' {
		state, rest = rest[1:6], rest[6:]
	}
	return code, state, rest, true
}
