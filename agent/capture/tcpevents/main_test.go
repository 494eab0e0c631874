package tcpevents

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// childEnv makes the test binary a helper process: "connect:<addr>" dials
// addr once and exits 0 whether or not the connect succeeded.
const childEnv = "TCPEVENTS_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	os.Exit(m.Run())
}

func runChild(v string) int {
	addr, ok := strings.CutPrefix(v, "connect:")
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown child mode %q\n", v)
		return 2
	}
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return 0
}
