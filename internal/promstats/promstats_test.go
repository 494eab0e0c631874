package promstats

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type innerStats struct {
	DecodeErrors uint64
}

type EmbeddedStats struct {
	Frames uint64
}

type sampleStats struct {
	EmbeddedStats // flattened: sightline_test_frames_total
	ConnsTracked  int
	RowsEmitted   uint64
	QueueLen      int `prom:"counter"`
	Pending       int `prom:"gauge"`
	Drops         map[string]uint64
	Inner         innerStats
	unexportedBad uint64
	Name          string
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"TCPSeq": "tcp_seq", "RowsByType": "rows_by_type", "ConnsTracked": "conns_tracked",
		"HTTPRequests": "http_requests", "A": "a", "ringbufFull": "ringbuf_full",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCollector(t *testing.T) {
	st := sampleStats{EmbeddedStats: EmbeddedStats{Frames: 6}, ConnsTracked: 3, RowsEmitted: 7, QueueLen: 2, Pending: 5,
		Drops: map[string]uint64{"ringbuf_full": 4}, Inner: innerStats{DecodeErrors: 1}, unexportedBad: 9}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New("sightline_test", func() any { return st }))
	want := `
# HELP sightline_test_conns_tracked Sightline internal counter sightline_test_conns_tracked.
# TYPE sightline_test_conns_tracked gauge
sightline_test_conns_tracked 3
# HELP sightline_test_drops_total Sightline internal counter sightline_test_drops_total.
# TYPE sightline_test_drops_total counter
sightline_test_drops_total{reason="ringbuf_full"} 4
# HELP sightline_test_frames_total Sightline internal counter sightline_test_frames_total.
# TYPE sightline_test_frames_total counter
sightline_test_frames_total 6
# HELP sightline_test_inner_decode_errors_total Sightline internal counter sightline_test_inner_decode_errors_total.
# TYPE sightline_test_inner_decode_errors_total counter
sightline_test_inner_decode_errors_total 1
# HELP sightline_test_pending Sightline internal counter sightline_test_pending.
# TYPE sightline_test_pending gauge
sightline_test_pending 5
# HELP sightline_test_queue_len_total Sightline internal counter sightline_test_queue_len_total.
# TYPE sightline_test_queue_len_total counter
sightline_test_queue_len_total 2
# HELP sightline_test_rows_emitted_total Sightline internal counter sightline_test_rows_emitted_total.
# TYPE sightline_test_rows_emitted_total counter
sightline_test_rows_emitted_total 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
