package rpctest

import (
	"encoding/binary"
	"hash/crc32"
)

// Bolt constants.
const (
	BoltTypeResponse = 0
	BoltTypeRequest  = 1
	BoltTypeOneway   = 2
	BoltCmdHeartbeat = 0
	BoltCmdRequest   = 1
	BoltCmdResponse  = 2
	BoltHessian2     = 1

	SofaRequestClass  = "com.alipay.sofa.rpc.core.request.SofaRequest"
	SofaResponseClass = "com.alipay.sofa.rpc.core.response.SofaResponse"
)

// BoltFrame is one Bolt command.
type BoltFrame struct {
	V2        bool // protocol 2 (ver1 2, CRC32 switched on)
	Type      byte
	Cmd       uint16
	ID        uint32
	Timeout   uint32 // requests
	Status    uint16 // responses
	Class     string
	Header    []string // key, value pairs
	Content   []byte
	CRCSwitch bool
}

// Encode returns the frame bytes.
func (f *BoltFrame) Encode() []byte {
	var hdr []byte
	for i := 0; i+1 < len(f.Header); i += 2 {
		hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(f.Header[i])))
		hdr = append(hdr, f.Header[i]...)
		hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(f.Header[i+1])))
		hdr = append(hdr, f.Header[i+1]...)
	}
	var b []byte
	if f.V2 {
		b = append(b, 2, 2)
	} else {
		b = append(b, 1)
	}
	b = append(b, f.Type)
	b = binary.BigEndian.AppendUint16(b, f.Cmd)
	b = append(b, 1) // ver2
	b = binary.BigEndian.AppendUint32(b, f.ID)
	b = append(b, BoltHessian2)
	if f.V2 {
		sw := byte(0)
		if f.CRCSwitch {
			sw = 1
		}
		b = append(b, sw)
	}
	if f.Type == BoltTypeResponse {
		b = binary.BigEndian.AppendUint16(b, f.Status)
	} else {
		b = binary.BigEndian.AppendUint32(b, f.Timeout)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.Class)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(hdr)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Content)))
	b = append(b, f.Class...)
	b = append(b, hdr...)
	b = append(b, f.Content...)
	if f.V2 && f.CRCSwitch {
		b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	}
	return b
}

// SofaRequest returns a SOFARPC request over Bolt for service and method.
func SofaRequest(id uint32, service, method string, oneway, v2 bool, args ...string) *BoltFrame {
	var h Hessian
	h.ClassDef(SofaRequestClass, "targetAppName", "methodName", "targetServiceUniqueName", "requestProps", "methodArgSigs")
	h.Object(0).Null().String(method).String(service).Null().Null()
	for _, a := range args {
		h.String(a)
	}
	typ := byte(BoltTypeRequest)
	if oneway {
		typ = BoltTypeOneway
	}
	return &BoltFrame{
		V2: v2, CRCSwitch: v2, Type: typ, Cmd: BoltCmdRequest, ID: id, Timeout: 3000,
		Class: SofaRequestClass,
		Header: []string{
			"service", service,
			"sofa_head_target_service", service,
			"sofa_head_method_name", method,
			"sofa_head_target_app", "demo",
			"new_rpc_trace_context", "tcid=0a0b0c0d1700000000001000" + itoa(int(id)) + "&spid=0.1&pspid=0&sample=true&",
		},
		Content: h.B,
	}
}

// SofaResponse returns a response frame: a SofaResponse object whose
// isError/errorMsg/appResponse fields are as given.
func SofaResponse(req *BoltFrame, status uint16, isError bool, errMsg string, value []byte) *BoltFrame {
	var h Hessian
	h.ClassDef(SofaResponseClass, "isError", "errorMsg", "appResponse", "responseProps")
	h.Object(0).Bool(isError)
	if errMsg == "" {
		h.Null()
	} else {
		h.String(errMsg)
	}
	if value == nil {
		h.Null()
	} else {
		h.B = append(h.B, value...)
	}
	h.Null()
	return &BoltFrame{
		V2: req.V2, CRCSwitch: req.CRCSwitch, Type: BoltTypeResponse, Cmd: BoltCmdResponse, ID: req.ID,
		Status: status, Class: SofaResponseClass, Content: h.B,
	}
}

// BoltFrameLen is the length of the Bolt frame at the start of b.
func BoltFrameLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	v2 := b[0] == 2
	off := 0
	if v2 {
		off = 1
	}
	if len(b) < off+2 {
		return 0
	}
	typ := b[off+1]
	var hl, lens int
	if typ == BoltTypeResponse {
		hl, lens = 20+off+boolInt(v2), 12+off+boolInt(v2)
	} else {
		hl, lens = 22+off+boolInt(v2), 14+off+boolInt(v2)
	}
	if len(b) < hl {
		return 0
	}
	n := hl + int(binary.BigEndian.Uint16(b[lens:])) + int(binary.BigEndian.Uint16(b[lens+2:])) + int(binary.BigEndian.Uint32(b[lens+4:]))
	if v2 && b[1] == 2 && b[11]&1 != 0 {
		n += 4
	}
	return n
}

// BoltID returns the frame's request id.
func BoltID(b []byte) uint32 {
	if b[0] == 2 {
		return binary.BigEndian.Uint32(b[6:])
	}
	return binary.BigEndian.Uint32(b[5:])
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
