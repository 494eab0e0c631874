package registry

import (
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/flowlog"
)

func TestRequestTimeout(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, http1.DefaultTimeout},
		{Config{RequestTimeout: 3 * time.Second}, 3 * time.Second},
	} {
		protos := New(tt.cfg)
		if len(protos) == 0 || protos[0].ID() != flowlog.L7HTTP1 {
			t.Fatalf("protocols %v: want HTTP/1 first", protos)
		}
		for _, p := range protos {
			if got := p.Timeout(); got != tt.want {
				t.Errorf("%v: %v timeout %v, want %v", tt.cfg, p.ID(), got, tt.want)
			}
		}
	}
}
