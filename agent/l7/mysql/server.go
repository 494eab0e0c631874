package mysql

import (
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/stream"
	"github.com/sightline-io/sightline/flowlog"
)

// serverPacket handles one packet from the server: the greeting, the end
// of the login, and the first packet of each command's response.
func (p *Parser) serverPacket(f *stream.Frame, seq byte, payload []byte, tcpSeq uint32, emit func(*l7.Message)) {
	switch p.phase {
	case phaseUnknown:
		if seq == 0 && payload[0] == 10 {
			if g, ok := parseGreeting(payload[1:]); ok {
				p.version, p.serverVer, p.serverCaps = "10", g.version, g.caps
				p.phase = phaseGreeted
				return
			}
		}
	case phaseGreeted:
		if payload[0] == 0xff { // refused before login (too many connections ...)
			p.respond(f, payload, tcpSeq, pendingCmd{}, nil, emit)
		}
		return
	case phaseAuth:
		// Auth switch (0xfe) and more-data (0x01) packets continue the
		// exchange; OK or ERR ends it.
		if payload[0] == 0x00 || payload[0] == 0xff {
			p.phase = phaseCommand
			var attrs map[string]string
			if p.serverVer != "" {
				attrs = map[string]string{"server_version": p.serverVer}
			}
			p.respond(f, payload, tcpSeq, pendingCmd{}, attrs, emit)
		}
		return
	}
	if p.count == 0 {
		// No command waits: rows of a result set, or a response whose
		// command was not captured.
		if seq == 1 && !p.seenCommand && (payload[0] == 0x00 || payload[0] == 0xff) {
			p.seenCommand = true
			p.respond(f, payload, tcpSeq, pendingCmd{}, nil, emit)
			return
		}
		p.stats.Skipped++
		return
	}
	head := &p.pending[p.head]
	if seq != 1 && !head.any {
		p.stats.Skipped++
		return
	}
	if head.auth && payload[0] != 0x00 && payload[0] != 0xff {
		return
	}
	if payload[0] == 0xfb && (head.cmd == comQuery) {
		head.any = true // LOCAL INFILE: the answer follows the file
		return
	}
	pc := p.pop()
	p.respond(f, payload, tcpSeq, pc, nil, emit)
}

// respond emits the response whose first packet is payload.
func (p *Parser) respond(f *stream.Frame, payload []byte, tcpSeq uint32, pc pendingCmd, attrs map[string]string, emit func(*l7.Message)) {
	m := &p.msg
	*m = l7.Message{Type: l7.Response, Protocol: flowlog.L7MySQL, Version: p.version, Status: flowlog.StatusSuccess, Attributes: attrs}
	m.From(f.Start, tcpSeq)
	m.EndAt(f.End)
	m.Length = int64(len(f.Data) + f.Missing)
	m.Captured = uint32(len(f.Data))
	switch hdr := payload[0]; {
	case hdr == 0x00 && len(payload) >= 7:
		if pc.cmd == comStmtPrepare {
			p.remember(u32(payload[1:]), pc.stmt)
			break
		}
		affected, _, ok := okPacket(payload)
		if !ok {
			m.Status = flowlog.StatusParseFailed
			break
		}
		switch pc.cmd {
		case comQuery, comStmtExecute, comStmtBulkExecute:
			m.SQLAffectedRows, m.HasAffectedRows = affected, true
		}
		if pc.db != "" {
			p.db = pc.db
		}
	case hdr == 0xff:
		code, state, msg, ok := errPacket(payload)
		if !ok {
			m.Status = flowlog.StatusParseFailed
			break
		}
		m.Code, m.HasCode = int32(code), true
		m.Status = errorStatus(code, state)
		m.Exception = exception(state, msg)
	case hdr == 0x00 || hdr == 0xfe && len(payload) < 9:
		// Short OK or EOF: nothing more to say.
	default:
		// A result set (column count), a statistics string ...: its size
		// is that of the rows to come, unknown here.
		m.Length = -1
	}
	p.stats.Responses++
	emit(m)
}

func (p *Parser) remember(id uint32, st stmt) {
	if p.stmts == nil {
		p.stmts = make(map[uint32]stmt)
	}
	if len(p.stmts) >= maxStatements {
		for k := range p.stmts {
			delete(p.stmts, k) // any one: statements leak only with buggy clients
			break
		}
	}
	p.stmts[id] = st
}

// exception is "SQLSTATE: message", bounded.
func exception(state, msg []byte) string {
	msg = msg[:min(len(msg), maxException)]
	if len(state) == 0 {
		return string(msg)
	}
	b := make([]byte, 0, len(state)+2+len(msg))
	b = append(b, state...)
	b = append(b, ": "...)
	b = append(b, msg...)
	return string(b)
}
