"""A local webhook receiver on 127.0.0.1 (Slack/Teams/Chime stand-in) for notifier tests."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DROP = 0  # scripted "status" that closes the connection without an answer


@dataclass
class WebhookServer:
    """Records POSTs; ``script[path]`` lists the statuses to answer before a plain 200."""

    base: str
    script: dict[str, list[int]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def urls(self, *channels: str) -> dict[str, str]:
        return {channel: f"{self.base}/{channel}" for channel in channels}

    def posts(self, channel: str) -> list[dict[str, Any]]:
        return [body for path, body in self.received if path == f"/{channel}"]


@contextlib.contextmanager
def webhook_server() -> Iterator[WebhookServer]:
    """Serve until the context exits; the thread is a daemon, so it never outlives tests."""
    lock = threading.Lock()
    state: WebhookServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.received.append((self.path, body))
                queue = state.script.get(self.path, [])
                status = queue.pop(0) if queue else 200
            if status == DROP:
                self.close_connection = True
                return
            answer = b"ok" if status < 400 else b"invalid_payload"
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "3")
            if status == 302:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = WebhookServer(base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
