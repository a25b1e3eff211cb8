"""A threat feed server on 127.0.0.1 for the tests and the local demo.

It serves scripted feeds over plain HTTP (the updater fetches over HTTP only from
loopback, and only when THREAT_FEED_ALLOW_HTTP_LOOPBACK=1 says it runs locally), answers
conditional GETs with 304 when the ETag matches, and records every request's headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Feed:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class FeedServer:
    base: str
    feeds: dict[str, Feed] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def serve(self, path: str, body: str | bytes, *, status: int = 200) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.feeds["/" + path.lstrip("/")] = Feed(data, status)
        return self.url(path)

    def requests_for(self, path: str) -> list[dict[str, str]]:
        return [headers for seen, headers in self.requests if seen == "/" + path.lstrip("/")]


@contextlib.contextmanager
def feed_server() -> Iterator[FeedServer]:
    """Serve until the context exits (a daemon thread on an ephemeral port)."""
    lock = threading.Lock()
    state: FeedServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                state.requests.append((self.path, dict(self.headers.items())))
                feed = state.feeds.get(self.path)
            if feed is None:
                self._answer(404, b"not found", {})
                return
            if feed.status != 200:
                self._answer(feed.status, b"unavailable", {})
                return
            if self.headers.get("If-None-Match") == feed.etag:
                self._answer(304, b"", {"ETag": feed.etag})
                return
            self._answer(200, feed.body, {"ETag": feed.etag, "Content-Type": feed.content_type})

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            """Keep test and demo output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = FeedServer(base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
