// Command gohttps is the Go HTTPS server and client of e2e's TLS tests as a
// separate program, so that the test can build it stripped (-ldflags=-s -w):
// the agent must find crypto/tls in it without a symbol table.
//
//	gohttps server ADDR CERT KEY      print "ready", serve until killed
//	gohttps client BASE CA h1|h2 PATH...
//	                                  print "ready", wait for a line on
//	                                  stdin, GET each path on one connection
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gohttps:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 4 && args[0] == "server":
		return serve(args[1], args[2], args[3])
	case len(args) >= 4 && args[0] == "client":
		return get(args[1], args[2], args[3], args[4:])
	}
	return errors.New("usage: gohttps server ADDR CERT KEY | gohttps client BASE CA h1|h2 PATH...")
}

func serve(addr, cert, key string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"user"}`, r.PathValue("id"))
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ServeTLS(l, cert, key)
}

func get(base, caPath, proto string, paths []string) error {
	b, err := os.ReadFile(caPath)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("%s: no certificate", caPath)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxConnsPerHost: 1}
	switch proto {
	case "h1":
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	case "h2":
		tr.ForceAttemptHTTP2 = true
	default:
		return fmt.Errorf("proto %q", proto)
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for go-ahead: %w", err)
	}
	for _, p := range paths {
		resp, err := c.Get(base + p)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		fmt.Println(p, resp.StatusCode, resp.Proto)
	}
	return nil
}
