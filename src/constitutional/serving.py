"""An ASGI app served by uvicorn in a background thread, on loopback by default (the audit
app and the guard proxy in tests and notebooks; the command line runs them in front)."""

from __future__ import annotations

import socket
import threading
import time

from .errors import CaiError


class BackgroundServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, name: str = "server"):
        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url, self.name = f"http://{host}:{port}", name
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise CaiError(f"the {self.name} did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
