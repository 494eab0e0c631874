package rpctest

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"
)

// The scenario every protocol's live test runs on one connection: the same
// request ids for every protocol, so tests assert rows by request_id. The
// server decides what to answer from the request id alone.
const (
	IDHeartbeat = 1 // heartbeat (Dubbo, Bolt, KRPC): no row expected
	IDHello     = 2 // success
	IDMissing   = 3 // service not found
	IDFail      = 4 // the method throws
	IDOneway    = 5 // one-way call (Dubbo, Bolt)
	IDSlow      = 6 // answered after IDFast
	IDFast      = 7
	IDBig       = 8 // request and response larger than the 4096-byte capture
	IDJSON      = 9 // Dubbo with the fastjson serialization

	Service        = "com.example.GreetService"
	ServiceVersion = "1.0.0"
	MissingService = "com.example.MissingService"
	MethodHello    = "sayHello"
	MethodFail     = "fail"
	MethodNotify   = "notify"
	MethodSlow     = "slow"
	MethodFast     = "fast"
	MethodBig      = "echoBig"
	BigSize        = 10000
	SlowDelay      = 400 * time.Millisecond

	// KRPC numbers its services and messages.
	KRPCService        = 100
	KRPCMissingService = 999
	KRPCMsgHello       = 1
	KRPCMsgFail        = 2
	KRPCMsgSlow        = 3
	KRPCMsgFast        = 4
	KRPCMsgBig         = 5
	KRPCNotFound       = -554
	KRPCBusinessError  = -1000001

	// bRPC error codes the server answers with.
	BRPCNoService = 1001
	BRPCInternal  = 2001

	TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

// Env variables that turn a test binary into a server or a client process:
// "<proto>@<addr>", proto one of dubbo, sofarpc, brpc, krpc.
const (
	ServeEnv  = "SIGHTLINE_RPCTEST_SERVE"
	ClientEnv = "SIGHTLINE_RPCTEST_CLIENT"
)

// Main runs the server or the client named by the environment and exits,
// or returns false when neither is set (a normal test run). Call it first in
// TestMain.
func Main() bool {
	if v := os.Getenv(ServeEnv); v != "" {
		proto, addr, _ := strings.Cut(v, "@")
		err := serve(proto, addr)
		fmt.Fprintln(os.Stderr, "rpctest server:", err)
		os.Exit(1)
	}
	if v := os.Getenv(ClientEnv); v != "" {
		proto, addr, _ := strings.Cut(v, "@")
		if err := RunClient(proto, addr); err != nil {
			fmt.Fprintln(os.Stderr, "rpctest client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	return false
}

func serve(proto, addr string) error {
	switch proto {
	case "dubbo":
		return Serve(addr, DubboFrameLen, dubboHandler)
	case "sofarpc":
		return Serve(addr, BoltFrameLen, boltHandler)
	case "brpc":
		return Serve(addr, BRPCFrameLen, brpcHandler)
	case "krpc":
		return Serve(addr, KRPCFrameLen, krpcHandler)
	}
	return fmt.Errorf("unknown protocol %q", proto)
}

// RunClient runs the scenario against addr.
func RunClient(proto, addr string) error {
	switch proto {
	case "dubbo":
		return dubboClient(addr)
	case "sofarpc":
		return boltClient(addr)
	case "brpc":
		return brpcClient(addr)
	case "krpc":
		return krpcClient(addr)
	}
	return fmt.Errorf("unknown protocol %q", proto)
}

func delayFor(id uint64) time.Duration {
	if id == IDSlow {
		return SlowDelay
	}
	return 0
}

// ---- Dubbo ----

func dubboHandler(f []byte) ([]byte, time.Duration) {
	id := binary.BigEndian.Uint64(f[4:])
	flag := f[2]
	if flag&DubboFlagTwoWay == 0 {
		return nil, 0
	}
	if flag&DubboFlagEvent != 0 {
		return DubboResponse(id, 20, true, []byte{'N'}), 0
	}
	if flag&0x1f == DubboFastJSON {
		r := DubboResponse(id, 20, false, []byte("4\n\"hello world\"\n{\"dubbo\":\"2.0.2\"}\n"))
		r[2] = DubboFastJSON
		return r, 0
	}
	var h Hessian
	status := byte(20)
	switch id {
	case IDMissing:
		status = 60
		h.String("Not found exported service: " + MissingService + ":20880 in [" + Service + ":20880], may be version or group mismatch")
	case IDFail:
		h.Int(0).ClassDef("java.lang.IllegalStateException", "detailMessage", "suppressedExceptions").Object(0).String("boom").Null()
	case IDBig:
		h.Int(4).String(strings.Repeat("b", BigSize)).Map("dubbo", DubboVersion)
	default:
		h.Int(4).String("hello world").Map("dubbo", DubboVersion)
	}
	return DubboResponse(id, status, false, h.B), delayFor(id)
}

func dubboClient(addr string) error {
	cl, err := Dial(addr, DubboFrameLen, func(f []byte) uint64 { return binary.BigEndian.Uint64(f[4:]) })
	if err != nil {
		return err
	}
	defer cl.Close()
	call := func(q DubboRequest) error {
		q.TwoWay = true
		_, err := cl.Call(q.Encode(), q.ID)
		return err
	}
	steps := []DubboRequest{
		{ID: IDHeartbeat, Heartbeat: true},
		{ID: IDHello, Service: Service, ServiceVersion: ServiceVersion, Method: MethodHello, Args: []string{"world"},
			Attachments: []string{"traceparent", TraceParent}},
		{ID: IDMissing, Service: MissingService, Method: MethodHello, Args: []string{"world"}},
		{ID: IDFail, Service: Service, ServiceVersion: ServiceVersion, Method: MethodFail},
		{ID: IDJSON, Service: Service, ServiceVersion: ServiceVersion, Method: MethodHello, Args: []string{"json"}, Serialization: DubboFastJSON},
	}
	for _, q := range steps {
		if err := call(q); err != nil {
			return fmt.Errorf("request %d: %w", q.ID, err)
		}
	}
	oneway := DubboRequest{ID: IDOneway, Service: Service, ServiceVersion: ServiceVersion, Method: MethodNotify, Args: []string{"event"}}
	if _, err := cl.Send(oneway.Encode(), nil); err != nil {
		return err
	}
	slow := DubboRequest{ID: IDSlow, Service: Service, ServiceVersion: ServiceVersion, Method: MethodSlow, TwoWay: true}
	fast := DubboRequest{ID: IDFast, Service: Service, ServiceVersion: ServiceVersion, Method: MethodFast, TwoWay: true}
	if err := cl.concurrent(slow.Encode(), IDSlow, fast.Encode(), IDFast); err != nil {
		return err
	}
	big := DubboRequest{ID: IDBig, Service: Service, ServiceVersion: ServiceVersion, Method: MethodBig, Args: []string{strings.Repeat("a", BigSize)}}
	if err := call(big); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond) // let the one-way request be read
	return nil
}

// ---- SOFARPC (Bolt) ----

func boltHandler(f []byte) ([]byte, time.Duration) {
	v2 := f[0] == 2
	off := boolInt(v2)
	typ := f[off+1]
	cmd := binary.BigEndian.Uint16(f[off+2:])
	id := BoltID(f)
	if typ == BoltTypeOneway {
		return nil, 0
	}
	req := &BoltFrame{V2: v2, CRCSwitch: v2 && f[11]&1 != 0, ID: id}
	if cmd == BoltCmdHeartbeat {
		r := &BoltFrame{V2: v2, CRCSwitch: req.CRCSwitch, Type: BoltTypeResponse, Cmd: BoltCmdHeartbeat, ID: id}
		return r.Encode(), 0
	}
	var resp *BoltFrame
	switch id {
	case IDMissing:
		resp = SofaResponse(req, 6, true, "RPC-02001: Cannot find service processor of "+MissingService+":1.0", nil)
	case IDFail:
		var h Hessian
		h.ClassDef("java.lang.IllegalStateException", "detailMessage", "suppressedExceptions").Object(1).String("boom").Null()
		resp = SofaResponse(req, 0, false, "", h.B)
	case IDBig:
		var h Hessian
		resp = SofaResponse(req, 0, false, "", h.String(strings.Repeat("b", BigSize)).B)
	default:
		var h Hessian
		resp = SofaResponse(req, 0, false, "", h.String("hello world").B)
	}
	return resp.Encode(), delayFor(uint64(id))
}

func boltClient(addr string) error {
	cl, err := Dial(addr, BoltFrameLen, func(f []byte) uint64 { return uint64(BoltID(f)) })
	if err != nil {
		return err
	}
	defer cl.Close()
	svc := Service + ":1.0"
	hb := &BoltFrame{Type: BoltTypeRequest, Cmd: BoltCmdHeartbeat, ID: IDHeartbeat, Timeout: 1000}
	steps := []*BoltFrame{
		hb,
		SofaRequest(IDHello, svc, MethodHello, false, false, "world"),
		SofaRequest(IDMissing, MissingService+":1.0", MethodHello, false, false, "world"),
		SofaRequest(IDFail, svc, MethodFail, false, false),
	}
	for _, q := range steps {
		if _, err := cl.Call(q.Encode(), uint64(q.ID)); err != nil {
			return fmt.Errorf("request %d: %w", q.ID, err)
		}
	}
	if _, err := cl.Send(SofaRequest(IDOneway, svc, MethodNotify, true, false, "event").Encode(), nil); err != nil {
		return err
	}
	slow := SofaRequest(IDSlow, svc, MethodSlow, false, false)
	fast := SofaRequest(IDFast, svc, MethodFast, false, true) // Bolt v2 with CRC32
	if err := cl.concurrent(slow.Encode(), IDSlow, fast.Encode(), IDFast); err != nil {
		return err
	}
	big := SofaRequest(IDBig, svc, MethodBig, false, false, strings.Repeat("a", BigSize))
	if _, err := cl.Call(big.Encode(), IDBig); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	return nil
}

// ---- bRPC ----

func brpcHandler(f []byte) ([]byte, time.Duration) {
	id, _, _, _ := BRPCMeta(f)
	switch id {
	case IDMissing:
		return BRPCResponse(id, BRPCNoService, "Fail to find service="+MissingService, nil), 0
	case IDFail:
		return BRPCResponse(id, BRPCInternal, "boom", nil), 0
	case IDBig:
		return BRPCResponse(id, 0, "", ProtoString(strings.Repeat("b", BigSize))), 0
	}
	return BRPCResponse(id, 0, "", ProtoString("hello world")), delayFor(id)
}

func brpcClient(addr string) error {
	cl, err := Dial(addr, BRPCFrameLen, func(f []byte) uint64 { id, _, _, _ := BRPCMeta(f); return id })
	if err != nil {
		return err
	}
	defer cl.Close()
	steps := []BRPCRequest{
		{ID: IDHello, Service: Service, Method: MethodHello, LogID: 42, TraceID: 0x1122334455667788, SpanID: 0x99, Parent: 0x77,
			RequestID: "req-abc", Payload: ProtoString("world")},
		{ID: IDMissing, Service: MissingService, Method: MethodHello, Payload: ProtoString("world")},
		{ID: IDFail, Service: Service, Method: MethodFail},
	}
	for _, q := range steps {
		if _, err := cl.Call(q.Encode(), q.ID); err != nil {
			return fmt.Errorf("request %d: %w", q.ID, err)
		}
	}
	slow := BRPCRequest{ID: IDSlow, Service: Service, Method: MethodSlow}
	fast := BRPCRequest{ID: IDFast, Service: Service, Method: MethodFast}
	if err := cl.concurrent(slow.Encode(), IDSlow, fast.Encode(), IDFast); err != nil {
		return err
	}
	big := BRPCRequest{ID: IDBig, Service: Service, Method: MethodBig, Payload: ProtoString(strings.Repeat("a", BigSize)), Attachment: []byte("attachment")}
	_, err = cl.Call(big.Encode(), IDBig)
	return err
}

// ---- KRPC ----

func krpcHandler(f []byte) ([]byte, time.Duration) {
	m := KRPCDecode(f)
	resp := KRPCMeta{Direction: 2, Service: m.Service, Msg: m.Msg, Sequence: m.Sequence}
	if m.Service == 1 && m.Msg == 1 {
		return resp.Encode(nil), 0
	}
	switch {
	case m.Service == KRPCMissingService:
		resp.RetCode = KRPCNotFound
		return resp.Encode(nil), 0
	case m.Msg == KRPCMsgFail:
		resp.RetCode = KRPCBusinessError
		return resp.Encode(KRPCResult(KRPCBusinessError, "user not found")), 0
	case m.Msg == KRPCMsgBig:
		return resp.Encode(ProtoString(strings.Repeat("b", BigSize))), 0
	}
	return resp.Encode(ProtoString("hello world")), delayFor(uint64(m.Sequence))
}

func krpcClient(addr string) error {
	cl, err := Dial(addr, KRPCFrameLen, func(f []byte) uint64 {
		m := KRPCDecode(f)
		if m.Service == 1 && m.Msg == 1 {
			return IDHeartbeat // heartbeats carry no sequence
		}
		return uint64(m.Sequence)
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	hb := KRPCMeta{Direction: 1, Service: 1, Msg: 1}
	if _, err := cl.Call(hb.Encode(nil), IDHeartbeat); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	steps := []KRPCMeta{
		{Direction: 1, Service: KRPCService, Msg: KRPCMsgHello, Sequence: IDHello, Timeout: 3000,
			TraceID: "gtwdemo-ac110006-463659-122997101", SpanID: "gtwdemo-ac110006-463659-122997102"},
		{Direction: 1, Service: KRPCMissingService, Msg: KRPCMsgHello, Sequence: IDMissing},
		{Direction: 1, Service: KRPCService, Msg: KRPCMsgFail, Sequence: IDFail},
	}
	for _, q := range steps {
		if _, err := cl.Call(q.Encode(ProtoString("world")), uint64(q.Sequence)); err != nil {
			return fmt.Errorf("request %d: %w", q.Sequence, err)
		}
	}
	slow := KRPCMeta{Direction: 1, Service: KRPCService, Msg: KRPCMsgSlow, Sequence: IDSlow}
	fast := KRPCMeta{Direction: 1, Service: KRPCService, Msg: KRPCMsgFast, Sequence: IDFast}
	if err := cl.concurrent(slow.Encode(nil), IDSlow, fast.Encode(nil), IDFast); err != nil {
		return err
	}
	big := KRPCMeta{Direction: 1, Service: KRPCService, Msg: KRPCMsgBig, Sequence: IDBig}
	_, err = cl.Call(big.Encode(ProtoString(strings.Repeat("a", BigSize))), IDBig)
	return err
}
