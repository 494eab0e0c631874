# A Python service whose handler threads hand work to a ThreadPoolExecutor:
# the worker, not the thread that read the request, calls the downstream
# TCP service. Used by TestFutexHandoffThreadPool.
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOWN = ("127.0.0.1", int(sys.argv[1]))
POOL = ThreadPoolExecutor(max_workers=int(sys.argv[2]))
# Optional: wait for the result with a timeout (a timed futex wait, as the
# demo's worker.py does) instead of an untimed one.
TIMEOUT = float(sys.argv[3]) if len(sys.argv) > 3 else None


def call(n):
    with socket.create_connection(DOWN) as s:
        s.sendall(b"work %s\n" % n.encode())
        return s.recv(64)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        n = self.path.rsplit("/", 1)[-1]
        body = POOL.submit(call, n).result(timeout=TIMEOUT)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening", srv.server_address[1], flush=True)
srv.serve_forever()
