# Sightline demo: the Python worker. Standard library only. GET /work/<N>
# hands the request to a 4-thread pool; a pool thread does a raw-socket
# Redis GET py:<N> and the request thread waits for it.
import concurrent.futures
import http.server
import socket
import sys
import threading

REDIS_PORT = int(sys.argv[2])
pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
local = threading.local()


def redis_conn():
    c = getattr(local, "conn", None)
    if c is None:
        c = socket.create_connection(("127.0.0.1", REDIS_PORT))
        local.conn = c
        local.buf = b""
    return c


def read_line():
    while b"\r\n" not in local.buf:
        chunk = local.conn.recv(4096)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        local.buf += chunk
    line, local.buf = local.buf.split(b"\r\n", 1)
    return line


def redis_get(key):
    c = redis_conn()
    k = key.encode()
    c.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
    head = read_line()
    if head.startswith(b"$"):
        n = int(head[1:])
        if n < 0:
            return b""
        while len(local.buf) < n + 2:
            chunk = local.conn.recv(4096)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            local.buf += chunk
        val, local.buf = local.buf[:n], local.buf[n + 2:]
        return val
    if head.startswith(b"-"):
        raise RuntimeError(head.decode())
    return head


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        parts = self.path.split("/")
        if self.path == "/healthz":
            body = b"ok"
        elif len(parts) == 3 and parts[1] == "work" and parts[2].isdigit():
            try:
                val = pool.submit(redis_get, "py:" + parts[2]).result(timeout=20)
            except Exception as e:  # report, do not kill the server
                self.send_error(502, str(e))
                return
            body = b"worked " + parts[2].encode() + b" " + val
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
