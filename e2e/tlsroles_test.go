package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sightline-io/sightline/internal/livetest"
)

// tlsRoleEnv makes the test binary one of the TLS tests' Go processes (the
// agent never traces its own process); its value is a JSON tlsRole.
const tlsRoleEnv = "SIGHTLINE_E2E_TLS_ROLE"

func init() { livetest.Child(tlsRoleEnv, runTLSRole) }

// tlsRole is what a child process of the TLS tests does.
type tlsRole struct {
	// Kind is https-server, https-client, grpc-server or grpc-client.
	Kind string `json:"kind"`
	// Addr is the server's listen address (servers, grpc-client) or the
	// base URL (https-client).
	Addr string `json:"addr"`
	CA   string `json:"ca,omitempty"`
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// Proto is h1 or h2 (https-client).
	Proto string `json:"proto,omitempty"`
	// Paths are requested in order on one connection (https-client).
	Paths []string `json:"paths,omitempty"`
}

// Servers print "ready" once listening and serve until killed. Clients
// print "ready", wait for a line on stdin (the test first waits until the
// agent's TLS probes cover the process), do their calls, print one line
// per call and exit.
func runTLSRole(v string) error {
	var r tlsRole
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return fmt.Errorf("tls role %q: %w", v, err)
	}
	switch r.Kind {
	case "https-server":
		return runHTTPSServer(r)
	case "https-client":
		return runHTTPSClient(r)
	case "grpc-server":
		return runGRPCServer(r)
	case "grpc-client":
		return runGRPCClient(r)
	}
	return fmt.Errorf("tls role: unknown kind %q", r.Kind)
}

func runHTTPSServer(r tlsRole) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"user"}`, req.PathValue("id"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	l, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return fmt.Errorf("https server: %w", err)
	}
	fmt.Println("ready")
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// ServeTLS on a net.Listener is ListenAndServeTLS's own path; h2 on
	// by default (ALPN decides per connection).
	return fmt.Errorf("https server: %w", srv.ServeTLS(l, r.Cert, r.Key))
}

func caPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca %s: no certificate", path)
	}
	return pool, nil
}

// waitGo prints "ready" and waits for the test's go-ahead on stdin.
func waitGo() error {
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for go-ahead: %w", err)
	}
	return nil
}

func runHTTPSClient(r tlsRole) error {
	pool, err := caPool(r.CA)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxConnsPerHost: 1}
	switch r.Proto {
	case "h1":
		// A non-nil empty map: no HTTP/2 upgrade through ALPN.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	case "h2":
		tr.ForceAttemptHTTP2 = true
	default:
		return fmt.Errorf("https client: proto %q", r.Proto)
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	if err := waitGo(); err != nil {
		return err
	}
	for _, p := range r.Paths {
		resp, err := c.Get(r.Addr + p)
		if err != nil {
			return fmt.Errorf("https client: %w", err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("https client: body of %s: %w", p, err)
		}
		fmt.Println(p, resp.StatusCode, resp.Proto)
	}
	return nil
}

func runGRPCServer(r tlsRole) error {
	cert, err := tls.LoadX509KeyPair(r.Cert, r.Key)
	if err != nil {
		return fmt.Errorf("grpc server: %w", err)
	}
	l, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return fmt.Errorf("grpc server: %w", err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	healthpb.RegisterHealthServer(s, health.NewServer()) // "" is SERVING
	fmt.Println("ready")
	return fmt.Errorf("grpc server: %w", s.Serve(l))
}

func runGRPCClient(r tlsRole) error {
	pool, err := caPool(r.CA)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(r.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		return fmt.Errorf("grpc client: %w", err)
	}
	defer conn.Close()
	if err := waitGo(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("grpc client: check: %w", err)
	}
	fmt.Println("check", resp.GetStatus())
	return nil
}

// tlsFiles are a CA and a server certificate it signed for 127.0.0.1 and
// localhost, as PEM files.
type tlsFiles struct {
	CA, Cert, Key string
	pool          *x509.CertPool
}

// writeTestCerts makes a fresh CA and server certificate in dir.
func writeTestCerts(t *testing.T, dir string) tlsFiles {
	t.Helper()
	f, err := makeTestCerts(dir)
	if err != nil {
		t.Fatalf("test certificates: %v", err)
	}
	return f
}

func makeTestCerts(dir string) (tlsFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sightline e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("ca certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("ca certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("server key: %w", err)
	}
	f := tlsFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key")}
	for _, w := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{f.CA, "CERTIFICATE", caDER, 0o644}, {f.Cert, "CERTIFICATE", der, 0o644}, {f.Key, "PRIVATE KEY", keyDER, 0o600}} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), w.mode); err != nil {
			return tlsFiles{}, fmt.Errorf("write %s: %w", w.path, err)
		}
	}
	f.pool = x509.NewCertPool()
	f.pool.AddCert(caCert)
	return f, nil
}

// waitTLS waits until addr completes a TLS handshake with the test CA.
func waitTLS(t *testing.T, addr string, pool *x509.CertPool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := &net.Dialer{Timeout: time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err == nil {
			c.Close()
			return
		}
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) || time.Now().After(deadline) {
			t.Fatalf("%s: no TLS handshake: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
