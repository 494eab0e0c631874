// Package registry lists the protocols Sightline parses, in inference order,
// so the agent and replay build the same set from the same settings.
package registry

import (
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/http1"
)

// Config holds the protocol settings users can change. The zero value means
// every protocol's defaults.
type Config struct {
	// RequestTimeout is how long a request waits for its response before it
	// becomes a Timeout row (0: each protocol's default, 120 s for HTTP).
	RequestTimeout time.Duration
}

// New returns every built-in protocol configured by cfg.
func New(cfg Config) []l7.Protocol {
	return []l7.Protocol{
		http1.New(http1.WithTimeout(cfg.RequestTimeout)),
	}
}

// Default returns every built-in protocol with default settings.
func Default() []l7.Protocol { return New(Config{}) }
