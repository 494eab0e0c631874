// Package nginxconf writes the configuration of a private nginx, as the
// tests, the demo and the benchmarks run it: in the foreground, as root,
// with its pid file, error log and temporary files under one directory
// (its -p prefix) and no access log. Callers give the servers.
package nginxconf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Config is one private nginx.
type Config struct {
	Dir               string // prefix: nginx.conf, nginx.pid, error.log and temp paths go here
	Workers           int    // worker_processes; default 1
	WorkerConnections int    // default 256
	RlimitNofile      int    // worker_rlimit_nofile when > 0
	HTTP              string // the http block's own directives: upstreams, servers
}

// String returns the nginx.conf text.
func (c Config) String() string {
	workers, conns := c.Workers, c.WorkerConnections
	if workers <= 0 {
		workers = 1
	}
	if conns <= 0 {
		conns = 256
	}
	var b strings.Builder
	fmt.Fprintf(&b, "daemon off;\nmaster_process on;\nuser root;\nworker_processes %d;\n", workers)
	if c.RlimitNofile > 0 {
		fmt.Fprintf(&b, "worker_rlimit_nofile %d;\n", c.RlimitNofile)
	}
	fmt.Fprintf(&b, `pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections %[2]d; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
`, c.Dir, conns)
	b.WriteString(strings.TrimRight(c.HTTP, "\n"))
	b.WriteString("\n}\n")
	return b.String()
}

// Write writes Dir/nginx.conf and returns its path (for nginx -c).
func Write(c Config) (string, error) {
	path := filepath.Join(c.Dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
		return "", fmt.Errorf("nginx config: %w", err)
	}
	return path, nil
}
