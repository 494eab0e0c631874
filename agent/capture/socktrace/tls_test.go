package socktrace

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/capture"
	"github.com/sightline-io/sightline/agent/goinfo"
)

const systemLibssl = "/usr/lib/x86_64-linux-gnu/libssl.so.3"

// elfSymbolOffsets resolves dynamic symbols of an ELF file to file offsets.
func elfSymbolOffsets(t *testing.T, path string, names ...string) map[string]uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint64{}
	for _, s := range syms {
		if !want[s.Name] || s.Value == 0 {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Memsz {
				out[s.Name] = s.Value - p.Vaddr + p.Off
			}
		}
	}
	return out
}

// attachSelfGoTLS puts the Go crypto/tls probes on the test binary.
func attachSelfGoTLS(t *testing.T, tr *Tracer) io.Closer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := goinfo.Inspect(self)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	rd, err := bin.Func("crypto/tls.(*Conn).Read")
	if err != nil {
		t.Fatal(err)
	}
	wr, err := bin.Func("crypto/tls.(*Conn).Write")
	if err != nil {
		t.Fatal(err)
	}
	o, err := bin.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	goLinks, err := tr.AttachGoTLS(self, GoTLSProbes{Read: rd.Offset, Write: wr.Offset, ReadReturns: rd.Returns,
		WriteReturns: wr.Returns, ConnConn: o.TLSConnConn, NetConnFD: o.NetConnFD, NetFDPfd: o.NetFDPfd, PollFDSysfd: o.PollFDSysfd,
		RawInput: o.TLSConnRawInput, Input: o.TLSConnInput, BytesBufferOff: o.BytesBufferOff, BytesReaderI: o.BytesReaderI})
	if err != nil {
		t.Fatal(err)
	}
	return goLinks
}

// selfSignedTLS returns a server certificate for 127.0.0.1.
func selfSignedTLS(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSPlaintext: curl (OpenSSL, SSL_write/SSL_read uprobes) talks HTTPS
// to this test process's Go TLS server (crypto/tls probes on its own
// binary). Both sides' plaintext arrives as TLS segments of their sockets,
// and the request's tcp_seq is the same on both: the seq of the record that
// carried it.
func TestTLSPlaintext(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not installed (scripts/install-test-deps.sh): %v", err)
	}
	tr, rec := startTracer(t, Config{MaxPayload: testMaxPayload})
	rec.keepData = func(s *capture.Segment) bool { return s.TLS }

	offs := elfSymbolOffsets(t, systemLibssl, "SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex")
	sslLinks, err := tr.AttachSSL(systemLibssl, SSLProbes{Read: offs["SSL_read"], Write: offs["SSL_write"],
		ReadEx: offs["SSL_read_ex"], WriteEx: offs["SSL_write_ex"]})
	if err != nil {
		t.Fatal(err)
	}
	defer sslLinks.Close()

	defer attachSelfGoTLS(t, tr).Close()

	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSignedTLS(t)}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}), TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}} // HTTP/1.1
	go srv.Serve(ln)
	defer srv.Close()
	sport := uint16(ln.Addr().(*net.TCPAddr).Port)

	url := "https://127.0.0.1:" + strconv.Itoa(int(sport))
	out, err := exec.Command("curl", "-sk", "--http1.1", url+"/tls-one", url+"/tls-two").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if !bytes.Contains(out, []byte("hello /tls-two")) {
		t.Fatalf("curl output %q", out)
	}
	for _, path := range []string{"/tls-one", "/tls-two"} {
		req := []byte("GET " + path + " HTTP/1.1")
		cli := rec.waitSegment(t, "curl's TLS request "+path, func(s *capture.Segment) bool {
			return s.Comm == "curl" && s.Dir == capture.AtoB && s.Tuple.BPort == sport && bytes.HasPrefix(s.Data, req)
		})
		srvSeg := rec.waitMessage(t, "server's TLS request "+path, func(s *capture.Segment) bool {
			return s.PID == uint32(os.Getpid()) && s.Dir == capture.BtoA && s.Tuple.APort == sport
		}, req)
		if cli.TCPSeq == 0 || cli.TCPSeq != srvSeg.TCPSeq {
			t.Errorf("%s: tcp seq curl %d, server %d: want equal, non-zero", path, cli.TCPSeq, srvSeg.TCPSeq)
		}
		if cli.Socket == 0 || cli.Tuple.APort != srvSeg.Tuple.BPort {
			t.Errorf("%s: tuples curl %+v, server %+v", path, cli.Tuple, srvSeg.Tuple)
		}
		resp := []byte("HTTP/1.1 200 OK")
		rs := rec.waitSegment(t, "server's TLS response "+path, func(s *capture.Segment) bool {
			return s.PID == uint32(os.Getpid()) && s.Dir == capture.AtoB && s.Tuple.APort == sport &&
				s.Tuple.BPort == cli.Tuple.APort && bytes.HasPrefix(s.Data, resp)
		})
		rc := rec.waitSegment(t, "curl's TLS response "+path, func(s *capture.Segment) bool {
			return s.Comm == "curl" && s.Dir == capture.BtoA && s.Tuple.BPort == sport && bytes.HasPrefix(s.Data, resp) &&
				s.TCPSeq == rs.TCPSeq
		})
		if rs.TCPSeq == 0 || fmt.Sprint(rc.Tuple.APort) != fmt.Sprint(cli.Tuple.APort) {
			t.Errorf("%s: response seq %d, curl tuple %+v", path, rs.TCPSeq, rc.Tuple)
		}
	}
	if t.Failed() {
		rec.mu.Lock()
		for _, s := range rec.segs {
			t.Logf("pid %d %s dir %d %v seq %d %q", s.PID, s.Comm, s.Dir, s.Tuple, s.TCPSeq, s.Data[:min(len(s.Data), 30)])
		}
		rec.mu.Unlock()
	}
	if st := tr.Stats(); st.TLSNoSocket != 0 || st.TLSCallFail != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestForkInheritsTLSAllowance: with a TLS process filter, a child forked
// without exec (an nginx worker) is decrypted if its parent is, at once,
// and user space hears of the fork; new threads are not reported.
func TestForkInheritsTLSAllowance(t *testing.T) {
	tr, rec := startTracer(t, Config{MaxPayload: testMaxPayload, TLSFilter: true})
	sh := exec.Command("sh", "-c", "read x; sleep 2 & wait")
	in, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	parent := uint32(sh.Process.Pid)
	if err := tr.AllowTLS(parent); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "go\n")
	in.Close()
	var child uint32
	rec.wait(t, "fork of the shell", func() bool {
		for _, f := range rec.forks {
			if f[0] == parent {
				child = f[1]
				return true
			}
		}
		return false
	})
	var v uint8
	if err := tr.maps.tlsPIDs.Lookup(child, &v); err != nil {
		t.Errorf("forked child %d of an allowed parent not allowed: %v", child, err)
	}
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tr.maps.tlsPIDs.Lookup(child, &v); err == nil {
		t.Errorf("exited child %d still allowed", child)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, f := range rec.forks {
		if f[0] == uint32(os.Getpid()) && f[1] == uint32(os.Getpid()) {
			t.Errorf("a thread reported as a fork: %v", f)
		}
	}
}
