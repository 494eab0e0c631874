package capture

import "testing"

func TestSeqAt(t *testing.T) {
	tests := []struct {
		name string
		seg  Segment
		off  int
		want uint32
	}{
		{"bytes on the wire", Segment{TCPSeq: 1000}, 24, 1024},
		{"wraps", Segment{TCPSeq: 0xffffffff}, 2, 1},
		{"unknown stays unknown", Segment{}, 24, 0},
		{"TLS plaintext: the record's sequence", Segment{TCPSeq: 1000, TLS: true}, 24, 1000},
	}
	for _, tt := range tests {
		if got := tt.seg.SeqAt(tt.off); got != tt.want {
			t.Errorf("%s: SeqAt(%d) = %d, want %d", tt.name, tt.off, got, tt.want)
		}
	}
}
