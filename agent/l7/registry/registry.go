// Package registry lists the protocols Sightline parses, in inference order,
// so the agent and replay build the same set from the same settings.
package registry

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/l7/amqp"
	"github.com/sightline-io/sightline/agent/l7/brpc"
	"github.com/sightline-io/sightline/agent/l7/dns"
	"github.com/sightline-io/sightline/agent/l7/dubbo"
	"github.com/sightline-io/sightline/agent/l7/fastcgi"
	"github.com/sightline-io/sightline/agent/l7/http1"
	"github.com/sightline-io/sightline/agent/l7/http2"
	"github.com/sightline-io/sightline/agent/l7/kafka"
	"github.com/sightline-io/sightline/agent/l7/krpc"
	"github.com/sightline-io/sightline/agent/l7/memcached"
	"github.com/sightline-io/sightline/agent/l7/mongodb"
	"github.com/sightline-io/sightline/agent/l7/mqtt"
	"github.com/sightline-io/sightline/agent/l7/mysql"
	"github.com/sightline-io/sightline/agent/l7/nats"
	"github.com/sightline-io/sightline/agent/l7/postgres"
	"github.com/sightline-io/sightline/agent/l7/redis"
	"github.com/sightline-io/sightline/agent/l7/sofarpc"
	"github.com/sightline-io/sightline/flowlog"
)

// Config holds the protocol settings users can change. The zero value means
// every protocol, with its defaults.
type Config struct {
	// RequestTimeout is how long a request waits for its response before it
	// becomes a Timeout row, for every protocol (0: each protocol's default:
	// 15 s DNS, 120 s the others).
	RequestTimeout time.Duration
	// Timeouts sets the timeout of single protocols by name; it beats
	// RequestTimeout.
	Timeouts map[string]time.Duration
	// Enable, when not empty, is the only protocols parsed (by name).
	Enable []string
	// Disable removes protocols (by name).
	Disable []string
	// KeepSecrets stores passwords, AUTH arguments, SQL literals and values
	// as captured instead of masking them.
	KeepSecrets bool
}

// entry is one built-in protocol.
type entry struct {
	name string
	id   flowlog.L7Protocol
	make func(l7.Config) l7.Protocol
}

// builtins lists every protocol in inference order: the ones whose first
// bytes are the most distinctive come first, loose text protocols last, so a
// protocol with a weak signature cannot steal another's connection. (The
// kernel's hint, when there is one, is tried before this order.)
func builtins() []entry {
	return []entry{
		{"http", flowlog.L7HTTP1, func(c l7.Config) l7.Protocol { return http1.New(http1.WithTimeout(c.Timeout)) }},
		{"http2", flowlog.L7HTTP2, func(c l7.Config) l7.Protocol { return http2.New(c) }},
		{"dubbo", flowlog.L7Dubbo, func(c l7.Config) l7.Protocol { return dubbo.New(c) }},
		{"brpc", flowlog.L7BRPC, func(c l7.Config) l7.Protocol { return brpc.New(c) }},
		{"krpc", flowlog.L7KRPC, func(c l7.Config) l7.Protocol { return krpc.New(c) }},
		{"mysql", flowlog.L7MySQL, func(c l7.Config) l7.Protocol { return mysql.New(c) }},
		// Bolt's first bytes are the weakest signature of the binary RPCs.
		{"sofarpc", flowlog.L7SofaRPC, func(c l7.Config) l7.Protocol { return sofarpc.New(c) }},
		{"postgresql", flowlog.L7Postgres, func(c l7.Config) l7.Protocol { return postgres.New(c) }},
		{"mongodb", flowlog.L7MongoDB, func(c l7.Config) l7.Protocol { return mongodb.New(c) }},
		{"fastcgi", flowlog.L7FastCGI, func(c l7.Config) l7.Protocol { return fastcgi.New(c) }},
		{"kafka", flowlog.L7Kafka, func(c l7.Config) l7.Protocol { return kafka.New(c) }},
		{"amqp", flowlog.L7AMQP, func(c l7.Config) l7.Protocol { return amqp.New(c) }},
		{"mqtt", flowlog.L7MQTT, func(c l7.Config) l7.Protocol { return mqtt.New(c) }},
		{"dns", flowlog.L7DNS, func(c l7.Config) l7.Protocol { return dns.New(c) }},
		// Text protocols last: their first bytes say the least.
		{"redis", flowlog.L7Redis, func(c l7.Config) l7.Protocol { return redis.New(c) }},
		{"memcached", flowlog.L7Memcached, func(c l7.Config) l7.Protocol { return memcached.New(c) }},
		{"nats", flowlog.L7NATS, func(c l7.Config) l7.Protocol { return nats.New(c) }},
	}
}

// Names returns the protocol names Config accepts, in inference order.
func Names() []string {
	var out []string
	for _, e := range builtins() {
		out = append(out, e.name)
	}
	return out
}

// New returns the enabled protocols configured by cfg. Unknown names are
// an error, so a typo does not silently disable nothing.
func New(cfg Config) ([]l7.Protocol, error) {
	all := builtins()
	known := func(name string) bool {
		return slices.ContainsFunc(all, func(e entry) bool { return e.name == name })
	}
	for _, list := range [][]string{cfg.Enable, cfg.Disable} {
		for _, n := range list {
			if !known(n) {
				return nil, fmt.Errorf("registry: unknown protocol %q (known: %s)", n, strings.Join(Names(), ", "))
			}
		}
	}
	for n, d := range cfg.Timeouts {
		if !known(n) {
			return nil, fmt.Errorf("registry: timeout for unknown protocol %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		if d <= 0 {
			return nil, fmt.Errorf("registry: timeout for %s must be positive, got %v", n, d)
		}
	}
	var out []l7.Protocol
	for _, e := range all {
		if len(cfg.Enable) > 0 && !slices.Contains(cfg.Enable, e.name) {
			continue
		}
		if slices.Contains(cfg.Disable, e.name) {
			continue
		}
		c := l7.Config{Timeout: cfg.RequestTimeout, KeepSecrets: cfg.KeepSecrets}
		if d, ok := cfg.Timeouts[e.name]; ok {
			c.Timeout = d
		}
		out = append(out, e.make(c))
	}
	return out, nil
}

// Default returns every built-in protocol with default settings.
func Default() []l7.Protocol {
	p, err := New(Config{})
	if err != nil {
		panic(err) // the zero Config names no protocol: cannot fail
	}
	return p
}

// ParseList parses a comma-separated list of protocol names ("" is none).
func ParseList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.ToLower(strings.TrimSpace(f)); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseTimeouts parses "dns=15s,mysql=1m" into per-protocol timeouts.
func ParseTimeouts(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, f := range ParseList(s) {
		name, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("registry: timeout %q: want name=duration", f)
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("registry: timeout %q: %w", f, err)
		}
		out[name] = d
	}
	return out, nil
}

// IDs returns the l7_protocol numbers of protos, sorted (for diagnostics).
func IDs(protos []l7.Protocol) []int {
	var out []int
	for _, p := range protos {
		out = append(out, int(p.ID()))
	}
	sort.Ints(out)
	return out
}
