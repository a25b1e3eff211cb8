"""The one place remediators get AWS clients from.

Nothing here talks to AWS at import time. Clients are created lazily and cached for the
life of a warm Lambda container. Tests point them at moto (in-process ``mock_aws`` or a
moto server through ``AWS_ENDPOINT_URL``) and call :func:`reset` between cases; the
permissions meta-test hooks :func:`session` events to record every API call made.
"""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[tuple[str, str | None], Any] = {}

# Standard mode retries throttling and transient errors with backoff; remediators add
# their own bounded loops only for conditions AWS wants the caller to resolve
# (e.g. WAFOptimisticLockException needs a fresh LockToken).
_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=20
)


def session() -> boto3.session.Session:
    global _session
    with _lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session


def client(service: str, region: str | None = None) -> Any:
    """A cached client; endpoint overrides come from AWS_ENDPOINT_URL as boto3 reads it."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    key = (service, region)
    with _lock:
        cached = _clients.get(key)
    if cached is not None:
        return cached
    created = session().client(service, region_name=region, config=_CONFIG)
    with _lock:
        return _clients.setdefault(key, created)


BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0


def backoff(attempt: int, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Full jitter: spreads contending callers instead of retrying them in lockstep."""
    return random.uniform(0, min(cap, BACKOFF_BASE_SECONDS * 2**attempt))


def reset() -> None:
    """Forget the session and every client (tests, or after credentials change)."""
    global _session
    with _lock:
        _session = None
        _clients.clear()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ("" for any other exception)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def is_conditional_failure(exc: BaseException) -> bool:
    """Did a DynamoDB write fail its ConditionExpression?"""
    return error_code(exc) == "ConditionalCheckFailedException"


def partition(region: str) -> str:
    """The ARN partition of ``region``."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
