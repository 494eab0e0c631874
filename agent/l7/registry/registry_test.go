package registry

import (
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/flowlog"
)

func TestConfig(t *testing.T) {
	all := Names()
	if len(all) == 0 || all[0] != "http" {
		t.Fatalf("names %v: want http first", all)
	}
	for _, tt := range []struct {
		name    string
		cfg     Config
		wantN   int
		timeout map[flowlog.L7Protocol]time.Duration
		err     string
	}{
		{name: "defaults", cfg: Config{}, wantN: len(all), timeout: map[flowlog.L7Protocol]time.Duration{flowlog.L7HTTP1: 120 * time.Second, flowlog.L7DNS: 15 * time.Second}},
		{name: "global timeout", cfg: Config{RequestTimeout: 3 * time.Second}, wantN: len(all),
			timeout: map[flowlog.L7Protocol]time.Duration{flowlog.L7HTTP1: 3 * time.Second}},
		{name: "per-protocol timeout beats global", cfg: Config{RequestTimeout: 3 * time.Second, Timeouts: map[string]time.Duration{"http": time.Second}},
			wantN: len(all), timeout: map[flowlog.L7Protocol]time.Duration{flowlog.L7HTTP1: time.Second}},
		{name: "enable one", cfg: Config{Enable: []string{"http"}}, wantN: 1},
		{name: "disable one", cfg: Config{Disable: []string{"http"}}, wantN: len(all) - 1},
		{name: "unknown enable", cfg: Config{Enable: []string{"htp"}}, err: `unknown protocol "htp"`},
		{name: "unknown disable", cfg: Config{Disable: []string{"x"}}, err: `unknown protocol "x"`},
		{name: "unknown timeout", cfg: Config{Timeouts: map[string]time.Duration{"x": time.Second}}, err: "unknown protocol"},
		{name: "bad timeout", cfg: Config{Timeouts: map[string]time.Duration{"http": -1}}, err: "must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			protos, err := New(tt.cfg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(protos) != tt.wantN {
				t.Fatalf("%d protocols, want %d", len(protos), tt.wantN)
			}
			for _, p := range protos {
				if want, ok := tt.timeout[p.ID()]; ok && p.Timeout() != want {
					t.Errorf("%v timeout %v, want %v", p.ID(), p.Timeout(), want)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	if got := ParseList(" HTTP, redis ,,"); strings.Join(got, "|") != "http|redis" {
		t.Errorf("ParseList = %q", got)
	}
	m, err := ParseTimeouts("dns=5s, mysql=1m")
	if err != nil || m["dns"] != 5*time.Second || m["mysql"] != time.Minute {
		t.Errorf("ParseTimeouts = %v, %v", m, err)
	}
	for _, bad := range []string{"dns", "dns=fast"} {
		if _, err := ParseTimeouts(bad); err == nil {
			t.Errorf("ParseTimeouts(%q) accepted", bad)
		}
	}
}
