package mysql

import (
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/sqlnorm"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// clientPacket handles one packet from the client: the login, commands;
// authentication data and continuations are skipped.
func (p *Parser) clientPacket(f *stream.Frame, seq byte, payload []byte, tcpSeq uint32, emit func(*l7.Message)) {
	switch {
	case seq == 1 && p.phase == phaseGreeted:
		p.login(f, payload, tcpSeq, emit)
	case seq == 0:
		// Authentication data never has sequence 0: a command means the
		// login's end was not captured.
		p.command(f, payload, tcpSeq, emit)
	}
	// Other client packets: authentication data, LOCAL INFILE contents,
	// continuations of 16 MiB packets.
}

// login handles the HandshakeResponse (or an SSL request).
func (p *Parser) login(f *stream.Frame, payload []byte, tcpSeq uint32, emit func(*l7.Message)) {
	l, ok := parseLogin(payload)
	if !ok {
		p.phase = phaseCommand
		return
	}
	if len(payload) == 32 && l.caps&capSSL != 0 {
		// SSL request: the rest is TLS ciphertext. The server does not
		// answer it: a one-way row marks the connection as encrypted.
		p.stats.SSL++
		p.phase = phaseOff
		m := p.request(f, payload, tcpSeq, "SSL_REQUEST")
		m.OneWay = true
		p.stats.Requests++
		emit(m)
		return
	}
	p.clientCaps = l.caps
	p.compress = l.caps&capCompress != 0 && (p.serverCaps == 0 || p.serverCaps&capCompress != 0)
	p.db, p.user = l.db, l.user
	p.phase = phaseAuth
	m := p.request(f, payload, tcpSeq, "LOGIN")
	if l.user != "" {
		m.Attributes = map[string]string{"user": l.user}
	}
	p.stats.Requests++
	emit(m)
}

// request fills the parser's message as a request.
func (p *Parser) request(f *stream.Frame, payload []byte, tcpSeq uint32, typ string) *l7.Message {
	m := &p.msg
	*m = l7.Message{Type: l7.Request, Protocol: flowlog.L7MySQL, Version: p.version, RequestType: typ, Domain: p.db}
	m.From(f.Start, tcpSeq)
	m.EndAt(f.End)
	m.Length = int64(len(f.Data) + f.Missing)
	if len(payload)+f.Missing >= maxPacket {
		m.Length = -1 // continued in further packets
	}
	m.Captured = uint32(len(f.Data))
	return m
}

// command emits a client command as a request (one-way for QUIT,
// STMT_CLOSE and STMT_SEND_LONG_DATA) and queues it for its response.
func (p *Parser) command(f *stream.Frame, payload []byte, tcpSeq uint32, emit func(*l7.Message)) {
	cmd := payload[0]
	name := commandName(cmd)
	if name == "" {
		p.stats.Unknown++
		return
	}
	if p.phase != phaseCommand {
		p.phase = phaseCommand
	}
	p.seenCommand = true
	m := p.request(f, payload, tcpSeq, name)
	pc := pendingCmd{cmd: cmd}
	body := payload[1:]
	switch cmd {
	case comQuery:
		sql := p.querySQL(body)
		p.setSQL(m, sql)
		if m.RequestType == "" {
			m.RequestType = name
		}
		if m.RequestType == "USE" {
			pc.db = useTarget(sql)
		}
	case comStmtPrepare:
		p.setSQL(m, body)
		pc.stmt = stmt{command: m.RequestType, resource: m.Resource, endpoint: m.Endpoint}
		p.lastPrepare = pc.stmt
		m.RequestType = name
	case comInitDB, comCreateDB, comDropDB:
		db := string(body[:min(len(body), 256)])
		m.Resource, m.Endpoint = db, db
		if cmd == comInitDB {
			pc.db = db
			m.Domain = db
		}
	case comStmtExecute, comStmtClose, comStmtReset, comStmtFetch, comStmtSendLongData, comStmtBulkExecute:
		if len(body) >= 4 {
			id := u32(body)
			st, ok := p.stmts[id]
			if id == 0xffffffff {
				st, ok = p.lastPrepare, true
			}
			if ok {
				m.Resource, m.Endpoint = st.resource, st.endpoint
				if cmd == comStmtExecute && st.command != "" {
					m.RequestType = st.command
				}
			}
			if cmd == comStmtClose {
				delete(p.stmts, id)
			}
		}
	case comChangeUser:
		pc.auth, pc.any = true, true
		if u, _, ok := cstring(body); ok && len(u) <= 128 {
			m.Attributes = map[string]string{"user": string(u)}
		}
	}
	p.stats.Requests++
	if oneWay(cmd) {
		m.OneWay = true
		emit(m)
		return
	}
	p.push(pc)
	emit(m)
}

// querySQL strips the query attributes a MySQL 8 client sends first when
// both sides have CLIENT_QUERY_ATTRIBUTES (only the no-attribute form is
// understood; with attributes the text is not found).
func (p *Parser) querySQL(body []byte) []byte {
	if p.clientCaps&capQueryAttributes == 0 || p.serverCaps&capQueryAttributes == 0 {
		return body
	}
	n, k := lenenc(body)
	if k == 0 || n != 0 {
		return nil
	}
	_, k2 := lenenc(body[k:])
	if k2 == 0 {
		return nil
	}
	return body[k+k2:]
}

// setSQL sets RequestType, Resource and Endpoint from SQL text.
func (p *Parser) setSQL(m *l7.Message, sql []byte) {
	sql = sql[:min(len(sql), maxSQL)]
	if string(sql) != p.last.sql || p.last.sql == "" {
		s := string(sql)
		st := stmt{command: sqlnorm.Command(s), endpoint: sqlnorm.ShapeAs(sqlnorm.MySQL, s)}
		if p.keepSecrets {
			st.resource = s
		} else {
			st.resource = sqlnorm.MaskAs(sqlnorm.MySQL, s)
		}
		p.last.sql, p.last.st = s, st
	}
	m.RequestType, m.Resource, m.Endpoint = p.last.st.command, p.last.st.resource, p.last.st.endpoint
}

// useTarget returns the database of "USE db" (backquotes removed).
func useTarget(sql []byte) string {
	i := 0
	for i < len(sql) && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r') {
		i++
	}
	if len(sql)-i < 4 {
		return ""
	}
	rest := sql[i+3:]
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t' || rest[j] == '\n') {
		j++
	}
	rest = rest[j:]
	end := 0
	for end < len(rest) && rest[end] != ' ' && rest[end] != ';' && rest[end] != '\n' && rest[end] != '\t' && rest[end] != '\r' {
		end++
	}
	db := rest[:min(end, 256)]
	if len(db) >= 2 && db[0] == '`' && db[len(db)-1] == '`' {
		db = db[1 : len(db)-1]
	}
	return string(db)
}

func (p *Parser) push(pc pendingCmd) {
	if p.count == maxPending {
		p.head = (p.head + 1) % maxPending
		p.count--
	}
	p.pending[(p.head+p.count)%maxPending] = pc
	p.count++
}

func (p *Parser) pop() pendingCmd {
	pc := p.pending[p.head]
	p.pending[p.head] = pendingCmd{}
	p.head = (p.head + 1) % maxPending
	p.count--
	return pc
}
