"""Fetch a feed over HTTPS with a conditional GET, a size limit and a time limit.

Only ``https://`` URLs are fetched, and a redirect is followed only to another
``https://`` URL. Plain ``http://`` to the loopback interface is allowed when the caller
says so (``allow_http_loopback``), which only the tests and the local demo do: they serve
feeds from 127.0.0.1 without a certificate. The module never sets it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USER_AGENT = "playbook-as-code threat_feed"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_CHUNK = 64 * 1024


class FetchError(Exception):
    """The feed could not be fetched (network, HTTP status, size or time limit)."""


@dataclass(frozen=True)
class Fetched:
    status: int  # 200, or 304 when the feed is unchanged since the validators
    body: bytes
    etag: str
    last_modified: str


def check_url(url: str, *, allow_http_loopback: bool) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and allow_http_loopback and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise FetchError(f"feed URL must be https:// (got {parts.scheme or 'no'} scheme)")


class _CheckedRedirect(urllib.request.HTTPRedirectHandler):
    def __init__(self, allow_http_loopback: bool) -> None:
        self.allow_http_loopback = allow_http_loopback

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        check_url(newurl, allow_http_loopback=self.allow_http_loopback)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(
    url: str,
    *,
    validators: Mapping[str, str],
    headers: Mapping[str, str],
    max_bytes: int,
    timeout_seconds: float,
    allow_http_loopback: bool = False,
) -> Fetched:
    """GET ``url``; ``validators`` (``etag``, ``lastModified``) make it conditional."""
    check_url(url, allow_http_loopback=allow_http_loopback)
    request_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
    if validators.get("etag"):
        request_headers["If-None-Match"] = validators["etag"]
    if validators.get("lastModified"):
        request_headers["If-Modified-Since"] = validators["lastModified"]
    request = urllib.request.Request(url, headers=request_headers, method="GET")
    opener = urllib.request.build_opener(_CheckedRedirect(allow_http_loopback))
    deadline = time.monotonic() + timeout_seconds
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"feed is {declared} bytes, over the limit of {max_bytes}")
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"feed took longer than {timeout_seconds:g} s")
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"feed is over the limit of {max_bytes} bytes")
                chunks.append(chunk)
            return Fetched(
                status=response.status,
                body=b"".join(chunks),
                etag=response.headers.get("ETag", "") or "",
                last_modified=response.headers.get("Last-Modified", "") or "",
            )
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return Fetched(304, b"", validators.get("etag", ""), validators.get("lastModified", ""))
        raise FetchError(f"feed answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(f"feed unreachable: {reason}") from None
