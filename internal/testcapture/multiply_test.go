package testcapture

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightline-io/sightline/agent/l7/registry"
	"github.com/sightline-io/sightline/replay"
)

func TestMultiply(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "one.pcap")
	if err := WriteHTTP(src, 2, 3); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "many.pcap")
	n, err := Multiply(src, dst, 5)
	if err != nil {
		t.Fatal(err)
	}
	var one, many bytes.Buffer
	if _, err := replay.Run(context.Background(), src, &one, replay.Options{Protocols: registry.Default()}); err != nil {
		t.Fatal(err)
	}
	st, err := replay.Run(context.Background(), dst, &many, replay.Options{Protocols: registry.Default()})
	if err != nil {
		t.Fatal(err)
	}
	if int(st.Frames) != n {
		t.Errorf("replay read %d frames, Multiply wrote %d", st.Frames, n)
	}
	rows1 := strings.Count(one.String(), "\n")
	if rows1 != 6 || strings.Count(many.String(), "\n") != 5*rows1 {
		t.Fatalf("rows: %d in the original, %d in 5 copies", rows1, strings.Count(many.String(), "\n"))
	}
}
