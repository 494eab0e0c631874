package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/registry"
)

// protocolFlags choose and configure the L7 parsers (agent, up, replay).
type protocolFlags struct {
	enable, disable, timeouts string
	requestTimeout            time.Duration
	keepSecrets               bool
}

func (f *protocolFlags) register(fs *flag.FlagSet) {
	names := strings.Join(registry.Names(), ",")
	fs.StringVar(&f.enable, "protocols", "", "comma-separated protocols to parse (default: all of "+names+")")
	fs.StringVar(&f.disable, "disable-protocols", "", "comma-separated protocols not to parse")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 0,
		"a request without a response after this long is stored with response_status 2 (Timeout), for every protocol\n"+
			"(0: each protocol's default: 15s DNS, 120s the others)")
	fs.StringVar(&f.timeouts, "protocol-timeouts", "", "per-protocol request timeouts, e.g. dns=5s,mysql=60s (beats --request-timeout)")
	fs.BoolVar(&f.keepSecrets, "keep-secrets", false,
		"store passwords, AUTH arguments, SQL literals and values as captured (default: masked)")
}

// protocols builds the parsers the flags ask for; bad names and values are
// errors, so a typo is a usage error and not a silent no-op.
func (f *protocolFlags) protocols() ([]l7.Protocol, error) {
	cfg := registry.Config{
		RequestTimeout: f.requestTimeout,
		Enable:         registry.ParseList(f.enable),
		Disable:        registry.ParseList(f.disable),
		KeepSecrets:    f.keepSecrets,
	}
	if f.requestTimeout < 0 {
		return nil, fmt.Errorf("--request-timeout %v: must not be negative", f.requestTimeout)
	}
	t, err := registry.ParseTimeouts(f.timeouts)
	if err != nil {
		return nil, fmt.Errorf("--protocol-timeouts: %w", err)
	}
	cfg.Timeouts = t
	return registry.New(cfg)
}
