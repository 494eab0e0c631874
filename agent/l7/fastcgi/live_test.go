package fastcgi

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
	"github.com/sightline-io/sightline/internal/nginxconf"
)

var phpScripts = map[string]string{
	"echo.php":    `<?php header('Content-Type: text/plain'); echo "hello ", $_SERVER['REQUEST_METHOD'], " ", $_GET['name'] ?? '', " ", file_get_contents('php://input');`,
	"missing.php": `<?php http_response_code(404); echo "no such thing";`,
	"fail.php":    `<?php undefined_function_to_fail();`,
}

// startFPM runs php-fpm (as root: -R) on a free port with a private config.
func startFPM(t *testing.T, dir string) int {
	t.Helper()
	port := livetest.FreePort(t)
	conf := fmt.Sprintf(`[global]
pid = %[1]s/fpm.pid
error_log = %[1]s/fpm.log
daemonize = no

[www]
user = root
group = root
listen = 127.0.0.1:%[2]d
pm = static
pm.max_children = 2
php_admin_value[display_errors] = off
php_admin_value[log_errors] = on
`, dir, port)
	path := filepath.Join(dir, "fpm.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	livetest.Start(t, "php-fpm8.2", "-F", "-R", "-y", path)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	return port
}

// startNginx runs nginx passing *.php to php-fpm at fpmPort.
func startNginx(t *testing.T, dir string, fpmPort int) int {
	t.Helper()
	port := livetest.FreePort(t)
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range phpScripts {
		if err := os.WriteFile(filepath.Join(www, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path, err := nginxconf.Write(nginxconf.Config{Dir: dir, WorkerConnections: 64, HTTP: fmt.Sprintf(`  server {
    listen 127.0.0.1:%d;
    root %s;
    location ~ \.php$ {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass 127.0.0.1:%d;
    }
  }`, port, www, fpmPort)})
	if err != nil {
		t.Fatal(err)
	}
	livetest.Start(t, "nginx", "-c", path, "-p", dir)
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	return port
}

// fcgiWant is one curl request through nginx and its expected row.
type fcgiWant struct {
	method, resource, endpoint string
	code                       int32
	status                     flowlog.ResponseStatus
	exception                  string
	traceID                    string
	xRequestID                 string
}

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

var curlWants = []fcgiWant{
	{"GET", "/echo.php?name=alice&token=***", "/echo.php", 200, flowlog.StatusSuccess, "", traceID, "req-1"},
	{"POST", "/echo.php", "/echo.php", 200, flowlog.StatusSuccess, "", "", ""},
	{"GET", "/missing.php", "/missing.php", 404, flowlog.StatusClientError, "Not Found", "", ""},
	{"GET", "/fail.php", "/fail.php", 500, flowlog.StatusServerError, "Internal Server Error", "", ""},
}

func TestLiveFastCGI(t *testing.T) {
	livetest.RequireTools(t, "php-fpm8.2", "nginx", "curl")
	a := livetest.StartAgent(t, New(l7.Config{}))
	dir := t.TempDir()
	fpmPort := startFPM(t, dir)
	stop := livetest.Record(t, "fastcgi.pcap", fmt.Sprintf("tcp port %d", fpmPort))
	nginxPort := startNginx(t, dir, fpmPort)
	base := fmt.Sprintf("http://127.0.0.1:%d", nginxPort)

	curl := func(want string, args ...string) {
		t.Helper()
		out := livetest.Run(t, "curl", append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_code}"}, args...)...)
		if out != want {
			t.Fatalf("curl %v: status %s, want %s", args, out, want)
		}
	}
	curl("200", "-H", "traceparent: 00-"+traceID+"-00f067aa0ba902b7-01", "-H", "X-Request-ID: req-1", base+"/echo.php?name=alice&token=hunter2")
	curl("200", "--data-binary", "payload", base+"/echo.php")
	curl("404", base+"/missing.php")
	curl("500", base+"/fail.php")

	for _, w := range curlWants {
		for _, obs := range []string{flowlog.ObsClientProcess, flowlog.ObsServerProcess} {
			rows := a.WaitRows(t, obs+" "+w.method+" "+w.resource, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
				return int(r.ServerPort) == fpmPort && r.ObservationPoint == obs && r.RequestType == w.method && r.RequestResource == w.resource
			})
			checkRow(t, rows[0], w, true)
			if obs == flowlog.ObsClientProcess && rows[0].ProcessKName0 != "nginx" {
				t.Errorf("client process %q, want nginx", rows[0].ProcessKName0)
			}
			if obs == flowlog.ObsServerProcess && !strings.HasPrefix(rows[0].ProcessKName1, "php-fpm") {
				t.Errorf("server process %q, want php-fpm", rows[0].ProcessKName1)
			}
		}
	}
	stop()
}

func checkRow(t *testing.T, r flowlog.L7FlowLog, w fcgiWant, live bool) {
	t.Helper()
	ok := r.L7Protocol == flowlog.L7FastCGI && r.L7ProtocolStr == "FastCGI" && r.Type == flowlog.TypeSession &&
		r.Version == "1" && r.RequestDomain == "127.0.0.1" && r.Endpoint == w.endpoint &&
		r.ResponseCode != nil && *r.ResponseCode == w.code && r.ResponseStatus == w.status && r.ResponseException == w.exception &&
		r.RequestID != nil && *r.RequestID == 1 && r.Protocol == 6 && r.TraceID == w.traceID && r.XRequestID0 == w.xRequestID &&
		r.RequestLength > 0 && r.ResponseLength > 0 && (r.ResponseDuration > 0 || !live)
	if !ok {
		t.Errorf("want %+v, row:\n%s trace=%q xreq=%q version=%q lengths=%d/%d", w, livetest.Describe([]flowlog.L7FlowLog{r}),
			r.TraceID, r.XRequestID0, r.Version, r.RequestLength, r.ResponseLength)
	}
}
