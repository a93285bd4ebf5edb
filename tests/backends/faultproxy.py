"""A fault-injecting HTTP proxy on loopback, for tests: it forwards requests to an
upstream server, but a seeded share of them gets a 500, is dropped (the connection closed
with no answer) or is delayed past the client's timeout before being forwarded.

Which requests fail is decided by the seed, the request's body and how many times that
body has been seen, never by arrival order: with concurrent clients the order changes
from run to run, and a test that counts on a stage failing part-way (or finishing after
a few reruns) would otherwise pass or fail by chance."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    def __init__(self, upstream: str, fail: float = 0.07, drop: float = 0.07, delay: float = 0.06,
                 delay_s: float = 3.0, seed: int = 0):
        self.upstream = upstream.rstrip("/")
        self.rates = (fail, drop, delay)
        self.delay_s = delay_s
        self.seed = seed
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self.counts = {"forwarded": 0, "500": 0, "dropped": 0, "delayed": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = hashlib.sha256(body).hexdigest()
                with proxy.lock:
                    proxy.seen[key] = attempt = proxy.seen.get(key, 0) + 1
                x = random.Random(f"{proxy.seed}:{key}:{attempt}").random()
                fail, drop, delay = proxy.rates
                if x < fail:
                    proxy._count("500")
                    msg = b'{"error": {"message": "injected fault", "type": "server_error"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if x < fail + drop:
                    proxy._count("dropped")
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if x < fail + drop + delay:
                    proxy._count("delayed")
                    time.sleep(proxy.delay_s)
                proxy._count("forwarded")
                req = urllib.request.Request(proxy.upstream + self.path, data=body or None,
                                             method=self.command,
                                             headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                try:
                    with urllib.request.urlopen(req, timeout=300) as r:
                        status, data, ctype = r.status, r.read(), r.headers.get("Content-Type")
                except urllib.error.HTTPError as e:
                    status, data, ctype = e.code, e.read(), e.headers.get("Content-Type")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype or "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
