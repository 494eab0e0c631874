package rpctest

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// Dubbo header flag bits and the serialization ids the tests use.
const (
	DubboFlagRequest = 0x80
	DubboFlagTwoWay  = 0x40
	DubboFlagEvent   = 0x20
	DubboHessian2    = 2
	DubboFastJSON    = 6
	DubboVersion     = "2.0.2"
)

// DubboRequest is one Dubbo 2 request.
type DubboRequest struct {
	ID             uint64
	Service        string
	ServiceVersion string // "" is sent as null
	Method         string
	Args           []string
	Attachments    []string // key, value pairs
	TwoWay         bool
	Heartbeat      bool // an event whose body is null
	Serialization  byte // 0: hessian2
}

// Encode returns the request frame.
func (q *DubboRequest) Encode() []byte {
	ser := q.Serialization
	if ser == 0 {
		ser = DubboHessian2
	}
	flag := byte(DubboFlagRequest) | ser
	if q.TwoWay {
		flag |= DubboFlagTwoWay
	}
	var h Hessian
	switch {
	case q.Heartbeat && ser == DubboFastJSON:
		flag |= DubboFlagEvent
		h.B = []byte("null\n")
	case q.Heartbeat:
		flag |= DubboFlagEvent
		h.Null()
	case ser == DubboFastJSON:
		// One JSON value per line.
		ver := `null`
		if q.ServiceVersion != "" {
			ver = strconv.Quote(q.ServiceVersion)
		}
		lines := []string{strconv.Quote(DubboVersion), strconv.Quote(q.Service), ver, strconv.Quote(q.Method),
			strconv.Quote(strings.Repeat("Ljava/lang/String;", len(q.Args)))}
		for _, a := range q.Args {
			lines = append(lines, strconv.Quote(a))
		}
		lines = append(lines, `{"path":`+strconv.Quote(q.Service)+`}`)
		h.B = []byte(strings.Join(lines, "\n") + "\n")
	default:
		h.String(DubboVersion).String(q.Service)
		if q.ServiceVersion == "" {
			h.Null()
		} else {
			h.String(q.ServiceVersion)
		}
		h.String(q.Method).String(strings.Repeat("Ljava/lang/String;", len(q.Args)))
		for _, a := range q.Args {
			h.String(a)
		}
		att := append([]string{"path", q.Service, "interface", q.Service}, q.Attachments...)
		h.Map(att...)
	}
	return dubboFrame(flag, 0, q.ID, h.B)
}

// DubboResponse returns a response frame.
func DubboResponse(id uint64, status byte, event bool, body []byte) []byte {
	flag := byte(DubboHessian2)
	if event {
		flag |= DubboFlagEvent
	}
	return dubboFrame(flag, status, id, body)
}

func dubboFrame(flag, status byte, id uint64, body []byte) []byte {
	b := make([]byte, 16, 16+len(body))
	b[0], b[1], b[2], b[3] = 0xda, 0xbb, flag, status
	binary.BigEndian.PutUint64(b[4:], id)
	binary.BigEndian.PutUint32(b[12:], uint32(len(body)))
	return append(b, body...)
}

// DubboFrameLen is the length of the Dubbo frame at the start of b (0: more
// bytes needed).
func DubboFrameLen(b []byte) int {
	if len(b) < 16 {
		return 0
	}
	return 16 + int(binary.BigEndian.Uint32(b[12:]))
}
