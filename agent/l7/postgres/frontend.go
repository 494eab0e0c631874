package postgres

import (
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/sqlnorm"
	"github.com/sightline-io/sightline/agent/l7/stream"
)

// frontend handles one client message.
func (p *Parser) frontend(f *stream.Frame, emit func(*l7.Message)) bool {
	b := f.Data
	if p.startup {
		return p.startupMessage(f, emit)
	}
	typ := b[0]
	body := b[5:]
	switch typ {
	case 'Q':
		u := p.add(unitQuery)
		if u == nil {
			return true
		}
		p.request(&u.req, f, "")
		sql, _, _ := cstring(body)
		st := p.statement(sql)
		u.req.RequestType, u.req.Resource, u.req.Endpoint = st.command, st.resource, st.endpoint
		if u.req.RequestType == "" {
			u.req.RequestType = "QUERY"
		}
		p.closeBatch()
		p.flush(emit)
	case 'P':
		name, rest, ok := cstring(body)
		if !ok {
			return true
		}
		sql, _, _ := cstring(rest)
		st := p.statement(sql)
		p.setStatement(string(name), st)
		u := p.add(unitPrepare)
		if u == nil {
			return true
		}
		p.request(&u.req, f, "PREPARE")
		u.req.Resource, u.req.Endpoint = st.resource, st.endpoint
	case 'B':
		portal, rest, ok := cstring(body)
		if !ok {
			return true
		}
		name, _, _ := cstring(rest)
		st := p.stmts[string(name)]
		p.setPortal(string(portal), st)
	case 'E':
		portal, _, _ := cstring(body)
		st := p.portals[string(portal)]
		// The batch's Parse rows are not wanted: this Execute says what ran.
		for i := p.batchStart; i < len(p.units); i++ {
			if u := &p.units[i]; u.kind == unitPrepare && !u.emitted {
				u.dropped = true
			}
		}
		u := p.add(unitExecute)
		if u == nil {
			return true
		}
		p.request(&u.req, f, st.command)
		if u.req.RequestType == "" {
			u.req.RequestType = "EXECUTE"
		}
		u.req.Resource, u.req.Endpoint = st.resource, st.endpoint
	case 'S':
		p.add(unitSync)
		p.closeBatch()
		p.flush(emit)
	case 'H':
		p.flush(emit)
	case 'C':
		if len(body) >= 2 {
			name, _, _ := cstring(body[1:])
			if body[0] == 'S' {
				delete(p.stmts, string(name))
			} else {
				delete(p.portals, string(name))
			}
		}
	case 'X':
		var m l7.Message
		p.request(&m, f, "TERMINATE")
		m.OneWay = true
		p.stats.Requests++
		emit(&m)
	}
	// Describe, password/SASL messages ('p', never read), copy data, function
	// calls: nothing to report.
	return true
}

// startupMessage handles an untyped message: startup, SSL/GSS request or
// cancel request.
func (p *Parser) startupMessage(f *stream.Frame, emit func(*l7.Message)) bool {
	b := f.Data
	if len(b) < 8 {
		return false
	}
	switch be32(b[4:]) {
	case sslRequest, gssRequest:
		// Answered by one byte: 'S'/'G' (encryption follows) or 'N'.
		p.awaitSSL = true
		typ := "SSL_REQUEST"
		if be32(b[4:]) == gssRequest {
			typ = "GSSENC_REQUEST"
		}
		u := p.add(unitSSL)
		if u == nil {
			return true
		}
		p.request(&u.req, f, typ)
		p.closeBatch()
		p.flush(emit)
	case cancelCode:
		var m l7.Message
		p.request(&m, f, "CANCEL")
		m.OneWay = true
		p.stats.Requests++
		emit(&m)
		p.off = true
	case protocol30:
		s, _ := parseStartup(b[8:])
		p.db = s.database
		if p.db == "" {
			p.db = s.user // the server's default
		}
		p.startup = false
		u := p.add(unitLogin)
		if u == nil {
			return true
		}
		p.request(&u.req, f, "LOGIN")
		if s.user != "" {
			u.req.Attributes = map[string]string{"user": s.user}
		}
		p.closeBatch()
		p.flush(emit)
	default:
		// Another protocol version: not followed.
		p.off = true
		return false
	}
	return true
}

// statement masks SQL text once per Parse or Query.
func (p *Parser) statement(sql []byte) statement {
	sql = sql[:min(len(sql), maxSQL)]
	if len(sql) > 0 && string(sql) == p.last.sql {
		return p.last.st
	}
	s := string(sql)
	st := statement{command: sqlnorm.Command(s), endpoint: sqlnorm.ShapeAs(sqlnorm.Postgres, s)}
	if p.keepSecrets {
		st.resource = s
	} else {
		st.resource = sqlnorm.MaskAs(sqlnorm.Postgres, s)
	}
	p.last.sql, p.last.st = s, st
	return st
}

func (p *Parser) setStatement(name string, st statement) {
	if p.stmts == nil {
		p.stmts = make(map[string]statement)
	}
	if _, ok := p.stmts[name]; !ok && len(p.stmts) >= maxStatements {
		for k := range p.stmts {
			delete(p.stmts, k)
			break
		}
	}
	p.stmts[name] = st
}

func (p *Parser) setPortal(name string, st statement) {
	if p.portals == nil {
		p.portals = make(map[string]statement)
	}
	if _, ok := p.portals[name]; !ok && len(p.portals) >= maxPortals {
		for k := range p.portals {
			delete(p.portals, k)
			break
		}
	}
	p.portals[name] = st
}
